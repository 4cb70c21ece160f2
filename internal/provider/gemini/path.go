package gemini

import "strings"

// Native actions crs relays on /{version}/models/{model}:{action}. Other
// actions of the Gemini API (embedContent, batchGenerateContent,
// predict…) are not part of what the Gemini pool serves.
const (
	ActionGenerate       = "generateContent"
	ActionStreamGenerate = "streamGenerateContent"
	ActionCountTokens    = "countTokens"
)

// ParseNativePath splits a Gemini API path, "/v1beta/models/{model}:{action}"
// or "/v1/models/{model}:{action}", as it arrives after the relay's route
// prefix. Go's ServeMux cannot match "{model}:action" (a wildcard must be a
// whole segment), so the relay routes the "/v1beta/models/" prefix and
// calls this.
//
// ok is false for any other version, for an action crs does not relay, and
// for a model that is not a plain model id: letters, digits, '.', '-' and
// '_', starting with a letter or digit ("gemini-2.5-flash-lite"). The model
// ends up in the upstream URL, so the check keeps "..", slashes and escapes
// out of it.
func ParseNativePath(path string) (version, model, action string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", "", "", false
	}
	version, rest, ok = strings.Cut(rest, "/")
	if !ok || (version != "v1" && version != "v1beta") {
		return "", "", "", false
	}
	rest, ok = strings.CutPrefix(rest, "models/")
	if !ok {
		return "", "", "", false
	}
	model, action, ok = strings.Cut(rest, ":")
	if !ok || !validModel(model) {
		return "", "", "", false
	}
	switch action {
	case ActionGenerate, ActionStreamGenerate, ActionCountTokens:
		return version, model, action, true
	}
	return "", "", "", false
}

// RenameNativePath is path, a native request's path as ParseNativePath
// takes it, naming model instead: an account that serves a requested
// model under another name is sent that name where the native API reads
// it, in the path. ok is false when path is not a native path or model is
// not a plain model id (which keeps it from reshaping the URL).
func RenameNativePath(path, model string) (string, bool) {
	version, _, action, ok := ParseNativePath(path)
	if !ok || !validModel(model) {
		return "", false
	}
	return "/" + version + "/models/" + model + ":" + action, true
}

// validModel reports whether s is a plain model id.
func validModel(s string) bool {
	if s == "" || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// codeAssistMethods are the v1internal methods crs relays: what Gemini CLI
// calls to start up, generate and report (clients.md). Left out on
// purpose: setCodeAssistGlobalUserSetting changes settings of the shared
// account for everyone on it, and the GET methods
// (getCodeAssistGlobalUserSetting, operations polling) are not
// "POST /v1internal:{method}" calls.
var codeAssistMethods = map[string]bool{
	"loadCodeAssist":          true,
	"onboardUser":             true,
	"generateContent":         true,
	"streamGenerateContent":   true,
	"countTokens":             true,
	"retrieveUserQuota":       true,
	"listExperiments":         true,
	"fetchAdminControls":      true,
	"recordCodeAssistMetrics": true,
}

// ParseCodeAssistPath reads the method of a Code Assist path,
// "/v1internal:{method}" ("/v1internal:streamGenerateContent"), as it
// arrives after the relay's route prefix. ok is false for a method crs does
// not relay (see codeAssistMethods) and for anything else.
func ParseCodeAssistPath(path string) (method string, ok bool) {
	method, ok = strings.CutPrefix(path, "/v1internal:")
	if !ok || !codeAssistMethods[method] {
		return "", false
	}
	return method, true
}
