package gemini

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestSetProject checks each method's project field, byte for byte: only
// the named field changes.
func TestSetProject(t *testing.T) {
	const p = "acct-project"
	meta := `"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI","duetProject":"old"}`
	metaNew := strings.Replace(meta, `"old"`, `"`+p+`"`, 1)
	tests := []struct {
		name, method, body, project, want string
	}{
		{"generate: replaced in place", "generateContent",
			`{"model":"gemini-2.5-pro","project":"old","user_prompt_id":"u","request":{"contents":[],"project":"inner stays"}}`, p,
			`{"model":"gemini-2.5-pro","project":"acct-project","user_prompt_id":"u","request":{"contents":[],"project":"inner stays"}}`},
		{"stream: added when missing", "streamGenerateContent",
			`{"model":"m","request":{"contents":[]}}`, p,
			`{"model":"m","request":{"contents":[]},"project":"acct-project"}`},
		{"generate: odd spacing kept", "generateContent",
			"{ \"project\" : null ,\n \"model\":\"m\"}", p,
			"{ \"project\" : \"acct-project\" ,\n \"model\":\"m\"}"},
		{"retrieveUserQuota", "retrieveUserQuota", `{"project":"old"}`, p, `{"project":"acct-project"}`},
		{"listExperiments: project and duetProject", "listExperiments", `{"project":"old",` + meta + `}`, p, `{"project":"acct-project",` + metaNew + `}`},
		{"fetchAdminControls: empty body", "fetchAdminControls", ``, p, `{"project":"acct-project"}`},
		{"recordCodeAssistMetrics", "recordCodeAssistMetrics", `{"project":"old","metrics":[]}`, p, `{"project":"acct-project","metrics":[]}`},
		{"loadCodeAssist as Gemini CLI sends it", "loadCodeAssist",
			`{"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI"}}`, p,
			`{"metadata":{"ideType":"IDE_UNSPECIFIED","platform":"PLATFORM_UNSPECIFIED","pluginType":"GEMINI"},"cloudaicompanionProject":"acct-project"}`},
		{"loadCodeAssist with a client project", "loadCodeAssist",
			`{"cloudaicompanionProject":"old",` + meta + `}`, p, `{"cloudaicompanionProject":"acct-project",` + metaNew + `}`},
		{"onboardUser, standard tier", "onboardUser",
			`{"tierId":"standard-tier","cloudaicompanionProject":"old",` + meta + `}`, p,
			`{"tierId":"standard-tier","cloudaicompanionProject":"acct-project",` + metaNew + `}`},
		{"onboardUser, free tier: no project", "onboardUser",
			`{"tierId":"free-tier","metadata":{"ideType":"IDE_UNSPECIFIED"}}`, p,
			`{"tierId":"free-tier","metadata":{"ideType":"IDE_UNSPECIFIED"}}`},
		{"countTokens takes none", "countTokens", `{"request":{"model":"models/m","contents":[]}}`, p, `{"request":{"model":"models/m","contents":[]}}`},
		{"unknown method untouched", "somethingNew", `not even json`, p, `not even json`},
		{"no project known: untouched", "generateContent", `{"project":"old"}`, "", `{"project":"old"}`},
		{"project with quotes is escaped", "generateContent", `{}`, `a"b`, `{"project":"a\"b"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body)
			got, err := SetProject(tt.method, in, tt.project)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if string(in) != tt.body {
				t.Error("input slice modified")
			}
		})
	}
	for _, body := range []string{`[]`, `"x"`, `{"project":`, `nope`} {
		if _, err := SetProject("generateContent", []byte(body), p); err != ErrNotObject {
			t.Errorf("body %q: err %v, want ErrNotObject", body, err)
		}
	}
}

func TestNativeToCodeAssist(t *testing.T) {
	native := "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi \\u00e9\"}]}],\n \"generationConfig\":{\"responseJsonSchema\":{\"type\":\"object\"}}}"
	got, err := NativeToCodeAssist("gemini-2.5-pro", []byte(native), "proj-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"gemini-2.5-pro","project":"proj-1","request":` + native + `}`; string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if !gjson.ValidBytes(got) || gjson.GetBytes(got, "request").Raw != native {
		t.Fatalf("envelope is not valid JSON with the body inside as sent: %s", got)
	}
	got, err = NativeToCodeAssist(`m"x`, []byte(`{}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"model":"m\"x","request":{}}`; string(got) != want {
		t.Errorf("no project: got %s, want %s", got, want)
	}
	for _, body := range []string{``, `[]`, `{"a":`, `null`} {
		if _, err := NativeToCodeAssist("m", []byte(body), "p"); err != ErrNotObject {
			t.Errorf("body %q: err %v, want ErrNotObject", body, err)
		}
	}
}

func TestNativeCountTokensToCodeAssist(t *testing.T) {
	contents := `[{"role":"user","parts":[{"text":"count me"}]}]`
	for _, c := range []struct{ name, body, want string }{
		{"contents", `{"contents":` + contents + `}`, `{"request":{"model":"models/gemini-2.5-pro","contents":` + contents + `}}`},
		{"generateContentRequest", `{"generateContentRequest":{"model":"models/gemini-2.5-pro","contents":` + contents + `,"systemInstruction":{"parts":[]}}}`,
			`{"request":{"model":"models/gemini-2.5-pro","contents":` + contents + `}}`},
		{"none", `{}`, `{"request":{"model":"models/gemini-2.5-pro","contents":[]}}`},
		{"not an array", `{"contents":"x"}`, `{"request":{"model":"models/gemini-2.5-pro","contents":[]}}`},
	} {
		got, err := NativeCountTokensToCodeAssist("gemini-2.5-pro", []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
	if _, err := NativeCountTokensToCodeAssist("m", []byte(`[]`)); err != ErrNotObject {
		t.Errorf("err %v, want ErrNotObject", err)
	}
}

func TestUnwrapCodeAssist(t *testing.T) {
	inner := `{"candidates":[{"content":{"role":"model","parts":[{"text":"pong"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3},"modelVersion":"gemini-2.5-pro"}`
	tests := []struct{ name, in, want string }{
		{"wrapped", `{"response":` + inner + `,"traceId":"7a1f"}`, inner},
		{"trace first", `{"traceId":"7a1f", "response": ` + inner + ` }`, inner},
		{"array", `[{"response":` + inner + `,"traceId":"a"},{"response":{}}]`, `[` + inner + `,{}]`},
		{"array with an error element", `[{"response":{}},{"error":{"code":500}}]`, `[{},{"error":{"code":500}}]`},
		{"error body unchanged", `{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED"}}`, `{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED"}}`},
		{"native already", inner, inner},
		{"response not an object", `{"response":"x"}`, `{"response":"x"}`},
		{"not json", `<html>`, `<html>`},
		{"empty", ``, ``},
	}
	for _, tt := range tests {
		if got := UnwrapCodeAssist([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

// TestUnwrapCodeAssistEvent unwraps a whole Code Assist stream the way the
// relay would and reads it back as a native client does.
func TestUnwrapCodeAssistEvent(t *testing.T) {
	stream := ": hello\n\n" +
		"data: {\"response\":{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"po\"}]}}]},\"traceId\":\"t\"}\r\n\r\n" +
		"event: chunk\ndata: {\"response\":{\"usageMetadata\":{\"promptTokenCount\":3}},\"traceId\":\"t\"}\n\n" +
		"data: {\"error\":{\"code\":503,\"message\":\"x\",\"status\":\"UNAVAILABLE\"}}\n\n" +
		"data: {\"response\":\"odd\"}\n\n"
	var out []byte
	for _, ev := range readEvents(t, strings.NewReader(stream)) {
		out = UnwrapCodeAssistEvent(out, ev)
	}
	want := ": hello\n\n" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"po\"}]}}]}\n\n" +
		"event: chunk\ndata: {\"usageMetadata\":{\"promptTokenCount\":3}}\n\n" +
		"data: {\"error\":{\"code\":503,\"message\":\"x\",\"status\":\"UNAVAILABLE\"}}\n\n" +
		"data: {\"response\":\"odd\"}\n\n"
	if string(out) != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	// Usage read from the unwrapped stream is the same as from the
	// wrapped one.
	var a, b StreamUsage
	for _, ev := range readEvents(t, strings.NewReader(stream)) {
		a.Observe(ev)
	}
	for _, ev := range readEvents(t, bytes.NewReader(out)) {
		b.Observe(ev)
	}
	if a != b || !a.Reported {
		t.Fatalf("usage differs: wrapped %+v, unwrapped %+v", a, b)
	}
}

func FuzzUnwrapCodeAssist(f *testing.F) {
	f.Add([]byte(`{"response":{"candidates":[]},"traceId":"t"}`))
	f.Add([]byte(`[{"response":{"a":1}},2,{"response":[]}]`))
	f.Add([]byte("data: {\"response\":{\"a\":\"\\n\"}}\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := UnwrapCodeAssist(data)
		if gjson.ValidBytes(data) && !gjson.ValidBytes(out) {
			t.Fatalf("valid JSON %q unwrapped to invalid %q", data, out)
		}
		// Every event unwrapped from a stream reads back as one event.
		for _, ev := range readEvents(t, bytes.NewReader(data)) {
			b := UnwrapCodeAssistEvent(nil, ev)
			if !gjson.ValidBytes(ev.Data) || !gjson.ParseBytes(ev.Data).IsObject() {
				continue
			}
			if inner := gjson.GetBytes(ev.Data, "response"); inner.IsObject() {
				back := readEvents(t, bytes.NewReader(b))
				if len(back) != 1 || string(back[0].Data) != inner.Raw {
					t.Fatalf("event %q unwrapped to %q", ev.Raw, b)
				}
			} else if !bytes.Equal(b, ev.Raw) {
				t.Fatalf("event %q without a response changed to %q", ev.Raw, b)
			}
		}
		if m, err := NativeToCodeAssist("m", data, "p"); err == nil && !gjson.ValidBytes(m) {
			t.Fatalf("envelope of %q is not valid JSON: %q", data, m)
		}
		if m, err := NativeCountTokensToCodeAssist("m", data); err == nil && !gjson.ValidBytes(m) {
			t.Fatalf("countTokens envelope of %q is not valid JSON: %q", data, m)
		}
		for _, method := range []string{"generateContent", "loadCodeAssist", "onboardUser"} {
			if out, err := SetProject(method, data, "p"); err == nil && gjson.ValidBytes(data) && !gjson.ValidBytes(out) {
				t.Fatalf("%s: %q became invalid %q", method, data, out)
			}
		}
	})
}
