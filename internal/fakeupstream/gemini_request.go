package fakeupstream

import (
	"fmt"
	"net/http"

	"github.com/tidwall/gjson"
)

// geminiRequestFields are the top-level fields of a native
// GenerateContentRequest, in both JSON spellings protobuf accepts. The real
// API refuses any other with "Unknown name", which is how a relay that
// forwards Code Assist's session_id or its own bookkeeping to the native API
// gets caught.
var geminiRequestFields = map[string]bool{
	"model": true, "contents": true,
	"systemInstruction": true, "system_instruction": true,
	"tools": true, "toolConfig": true, "tool_config": true,
	"safetySettings": true, "safety_settings": true,
	"generationConfig": true, "generation_config": true,
	"cachedContent": true, "cached_content": true,
	"serviceTier": true, "service_tier": true,
	"store": true,
}

// geminiGenerate is the little the fake needs from a generate request.
type geminiGenerate struct {
	model string
	// codeAssist wraps replies in {response, traceId}.
	codeAssist bool
	stream     bool
	// sse is alt=sse; a stream without it is a JSON array.
	sse bool
	// jsonMode is responseMimeType application/json; schema is the
	// response schema, if any.
	jsonMode bool
	schema   gjson.Result
	// thoughts is thinkingConfig.includeThoughts.
	thoughts bool
}

// geminiField returns the first of the named fields that exists, for fields that
// protobuf JSON accepts in camelCase and snake_case.
func geminiField(obj gjson.Result, names ...string) gjson.Result {
	for _, n := range names {
		if v := obj.Get(gjson.Escape(n)); v.Exists() {
			return v
		}
	}
	return gjson.Result{}
}

// parseGeminiObject parses a body that must be a JSON object.
func parseGeminiObject(rep *geminiReply, body []byte) (gjson.Result, bool) {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		rep.error(http.StatusBadRequest, "Invalid JSON payload received. Unexpected token.", googleErrorDetails{})
		return gjson.Result{}, false
	}
	return gjson.ParseBytes(body), true
}

// checkGeminiContents enforces a non-empty contents list, the one field every
// generate and count request needs.
func checkGeminiContents(rep *geminiReply, req gjson.Result, prefix string) bool {
	contents := req.Get("contents")
	if contents.Exists() && !contents.IsArray() {
		rep.error(http.StatusBadRequest, fmt.Sprintf("Invalid value at '%scontents', expected a list of Content.", prefix), googleErrorDetails{})
		return false
	}
	if !contents.Exists() || len(contents.Array()) == 0 {
		rep.error(http.StatusBadRequest, "* GenerateContentRequest.contents: contents is not specified\n", googleErrorDetails{})
		return false
	}
	return true
}

// checkGenerateRequest enforces a generate request's body: a JSON object
// with contents; on the native API (strict) also no unknown top-level
// field. Unknown values inside known fields (new generationConfig knobs,
// tool shapes) are accepted: the relay must pass them through.
func checkGenerateRequest(rep *geminiReply, req gjson.Result, strict bool) (geminiGenerate, bool) {
	if strict {
		var unknown string
		req.ForEach(func(k, _ gjson.Result) bool {
			if !geminiRequestFields[k.Str] {
				unknown = k.Str
				return false
			}
			return true
		})
		if unknown != "" {
			rep.error(http.StatusBadRequest, fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", unknown), googleErrorDetails{})
			return geminiGenerate{}, false
		}
	}
	prefix := ""
	if !strict {
		prefix = "request."
	}
	if !checkGeminiContents(rep, req, prefix) {
		return geminiGenerate{}, false
	}
	gc := geminiField(req, "generationConfig", "generation_config")
	out := geminiGenerate{
		jsonMode: geminiField(gc, "responseMimeType", "response_mime_type").Str == "application/json",
		schema:   geminiField(gc, "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema"),
	}
	tc := geminiField(gc, "thinkingConfig", "thinking_config")
	out.thoughts = geminiField(tc, "includeThoughts", "include_thoughts").Type == gjson.True
	return out, true
}

// checkNativeCountBody enforces a countTokens body: contents, or a
// generateContentRequest (with its model) whose contents are counted.
func checkNativeCountBody(rep *geminiReply, body []byte) (gjson.Result, bool) {
	root, ok := parseGeminiObject(rep, body)
	if !ok {
		return gjson.Result{}, false
	}
	if gcr := geminiField(root, "generateContentRequest", "generate_content_request"); gcr.Exists() {
		if gcr.Get("model").Str == "" {
			rep.error(http.StatusBadRequest, "* CountTokensRequest.generate_content_request.model: model is required\n", googleErrorDetails{})
			return gjson.Result{}, false
		}
		return root, checkGeminiContents(rep, gcr, "generateContentRequest.")
	}
	return root, checkGeminiContents(rep, root, "")
}

// checkNativeGenerate enforces a native generateContent body.
func checkNativeGenerate(rep *geminiReply, body []byte) (geminiGenerate, bool) {
	root, ok := parseGeminiObject(rep, body)
	if !ok {
		return geminiGenerate{}, false
	}
	return checkGenerateRequest(rep, root, true)
}
