package gemini

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/crs-relay/crs/internal/sse"
)

// ErrNotObject is returned when a body that has to be rewritten or wrapped
// is not a JSON object.
var ErrNotObject = errors.New("gemini: body is not a JSON object")

// freeTier is the tier id of Code Assist's free tier, whose project Google
// manages: onboarding it with a project fails with "Precondition Failed".
const freeTier = "free-tier"

// SetProject puts the account's project into a Code Assist request body
// where method carries it, so every request on an account runs in that
// account's project whatever project the client thinks it has. Only the
// fields named below change; the rest of the body stays byte for byte.
//
//   - generateContent, streamGenerateContent, retrieveUserQuota,
//     listExperiments, fetchAdminControls, recordCodeAssistMetrics:
//     "project" (added when missing: each of these takes one).
//   - loadCodeAssist and onboardUser: "cloudaicompanionProject", as Gemini
//     CLI sends it; but not for an onboardUser to the free tier, which
//     must come without one.
//   - For all of them, "metadata.duetProject" when the body has it: it
//     repeats the project, and a stale copy would contradict the other.
//   - countTokens and anything else carry no project and are returned as
//     they are.
//
// An empty project (the account's is not known yet) changes nothing. A
// body that needs a project must be a JSON object (empty counts as {}),
// else ErrNotObject. The input slice is never modified.
func SetProject(method string, body []byte, project string) ([]byte, error) {
	if project == "" {
		return body, nil
	}
	field := ""
	switch method {
	case "generateContent", "streamGenerateContent", "retrieveUserQuota",
		"listExperiments", "fetchAdminControls", "recordCodeAssistMetrics":
		field = "project"
	case "loadCodeAssist", "onboardUser":
		field = "cloudaicompanionProject"
	default:
		return body, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !isObject(body) {
		return nil, ErrNotObject
	}
	if method == "onboardUser" && gjson.GetBytes(body, "tierId").String() == freeTier {
		return body, nil
	}
	out, err := sjson.SetBytes(body, field, project)
	if err != nil {
		return nil, err
	}
	if gjson.GetBytes(out, "metadata.duetProject").Exists() {
		if out, err = sjson.SetBytes(out, "metadata.duetProject", project); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// NativeToCodeAssist wraps a native generateContent body for a Code Assist
// account, so a client of the public API ("/v1beta/models/m:generateContent")
// can be served by an OAuth account: {"model":model,"project":project,
// "request":body}. The native body goes inside as sent, byte for byte; the
// project is left out when empty. body must be a JSON object.
func NativeToCodeAssist(model string, body []byte, project string) ([]byte, error) {
	if !isObject(body) {
		return nil, ErrNotObject
	}
	out := make([]byte, 0, len(body)+len(model)+len(project)+40)
	out = append(out, `{"model":`...)
	out = appendJSONString(out, model)
	if project != "" {
		out = append(out, `,"project":`...)
		out = appendJSONString(out, project)
	}
	out = append(out, `,"request":`...)
	out = append(out, body...)
	return append(out, '}'), nil
}

// NativeCountTokensToCodeAssist moves a native countTokens body into Code
// Assist's shape, {"request":{"model":"models/<model>","contents":[…]}}.
// The native body has its contents either at the top or inside
// generateContentRequest; Code Assist counts contents only, so a system
// instruction or tools inside generateContentRequest are not counted.
// body must be a JSON object.
func NativeCountTokensToCodeAssist(model string, body []byte) ([]byte, error) {
	if !isObject(body) {
		return nil, ErrNotObject
	}
	res := gjson.GetManyBytes(body, "contents", "generateContentRequest.contents")
	contents := res[0]
	if !contents.Exists() {
		contents = res[1]
	}
	raw := contents.Raw
	if !contents.IsArray() {
		raw = "[]"
	}
	out := make([]byte, 0, len(raw)+len(model)+48)
	out = append(out, `{"request":{"model":`...)
	out = appendJSONString(out, "models/"+model)
	out = append(out, `,"contents":`...)
	out = append(out, raw...)
	return append(out, "}}"...), nil
}

// UnwrapCodeAssist turns a Code Assist answer into the native one a Gemini
// API client expects: {"response":{…},"traceId":…} becomes the inner
// object, as sent (a subslice of resp, not a copy). A JSON array of such answers (streamGenerateContent
// without alt=sse) becomes the array of inner objects. Anything else, an
// error body in particular, is returned unchanged: Google's error shape is
// the same on both APIs.
func UnwrapCodeAssist(resp []byte) []byte {
	root := gjson.ParseBytes(resp)
	switch {
	case root.IsObject():
		if inner := root.Get("response"); inner.IsObject() {
			return rawBytes(resp, inner)
		}
		return resp
	case root.IsArray():
		out := make([]byte, 0, len(resp))
		out = append(out, '[')
		n := 0
		root.ForEach(func(_, elem gjson.Result) bool {
			if n > 0 {
				out = append(out, ',')
			}
			n++
			if inner := elem.Get("response"); elem.IsObject() && inner.IsObject() {
				out = append(out, inner.Raw...)
			} else {
				out = append(out, elem.Raw...)
			}
			return true
		})
		return append(out, ']')
	}
	return resp
}

// UnwrapCodeAssistEvent appends to dst the native form of one event of a
// Code Assist stream: an event whose data is {"response":{…}} is written
// again with the inner object as its data (and the event's name, if it
// had one). Any other event (a comment, a keep-alive, an error chunk) is
// appended as it came, from ev.Raw.
func UnwrapCodeAssistEvent(dst []byte, ev sse.Event) []byte {
	if ev.Data == nil || !bytes.Contains(ev.Data, []byte(`"response"`)) {
		return append(dst, ev.Raw...)
	}
	root := gjson.ParseBytes(ev.Data)
	inner := root.Get("response")
	if !root.IsObject() || !inner.IsObject() {
		return append(dst, ev.Raw...)
	}
	return sse.AppendEvent(dst, ev.Name, rawBytes(ev.Data, inner))
}

// rawBytes returns r's raw JSON as a slice of src when gjson located it
// there, without copying; a copy otherwise.
func rawBytes(src []byte, r gjson.Result) []byte {
	if r.Index > 0 && r.Index+len(r.Raw) <= len(src) && string(src[r.Index:r.Index+len(r.Raw)]) == r.Raw {
		return src[r.Index : r.Index+len(r.Raw) : r.Index+len(r.Raw)]
	}
	return []byte(r.Raw)
}

// isObject reports whether body is one valid JSON object.
func isObject(body []byte) bool {
	return gjson.ValidBytes(body) && gjson.ParseBytes(body).IsObject()
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}
