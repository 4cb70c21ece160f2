package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

var (
	uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	hex64  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

const (
	clientDevice  = "1111111111111111111111111111111111111111111111111111111111111111"
	clientSession = "5b0f8a8e-3d51-4a0c-9f51-1d7c2f0f4a11"
	accountUUID   = "0c5ad4b2-6f1e-4a8e-9c2d-3b1f2e4d5a6c"
)

// ccBody is shaped like Claude Code 2.1.332's body (clients.md), with the
// awkward bits a byte-level rewrite could trip on: escapes, non-ASCII,
// a role:"system" message, cache_control ttl, metadata keys around user_id.
func ccBody(userID string) []byte {
	uid, _ := json.Marshal(userID)
	return []byte(`{"model":"claude-opus-5-5","max_tokens":128000,` +
		`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.201; cc_entrypoint=sdk-cli;"},` +
		`{"type":"text","text":"You are a Claude agent, built on Anthropic's Claude Agent SDK.","cache_control":{"type":"ephemeral","ttl":"1h"}},` +
		`{"type":"text","text":"Main prompt \"quoted\" \\ back\\slash\n\ttabs, ünïcødé 日本語, \u003chtml\u003e","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"text","text":"say pong"}]},` +
		`{"role":"system","content":[{"type":"text","text":"env: linux"}]}],` +
		`"tools":[{"name":"Bash","input_schema":{"type":"object"}},{"name":"Skill","defer_loading":true,"input_schema":{"type":"object"}}],` +
		`"metadata":{"before":1,"user_id":` + string(uid) + `,"after":{"k":[1,2]}},` +
		`"thinking":{"type":"adaptive","display":"omitted"},"output_config":{"effort":"medium"},` +
		`"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},"stream":true}`)
}

func TestNewIdentity(t *testing.T) {
	a1 := NewIdentity("acct-a", accountUUID, nil)
	a2 := NewIdentity("acct-a", accountUUID, nil)
	b := NewIdentity("acct-b", "", nil)
	if !hex64.MatchString(a1.DeviceID) {
		t.Errorf("device id %q is not 64 hex", a1.DeviceID)
	}
	if a1.DeviceID != a2.DeviceID || a1.UserAgent != a2.UserAgent || len(a1.Stainless) != 6 {
		t.Errorf("identity not deterministic: %+v vs %+v", a1, a2)
	}
	for k, v := range a1.Stainless {
		if a2.Stainless[k] != v {
			t.Errorf("fingerprint %s differs: %q vs %q", k, v, a2.Stainless[k])
		}
	}
	if a1.DeviceID == b.DeviceID {
		t.Error("two accounts share a device id")
	}
	if a1.AccountUUID != accountUUID || a1.UserAgent != DefaultClaudeCodeUserAgent {
		t.Errorf("identity = %+v", a1)
	}
	// Across accounts the machine varies, among real pairs only.
	machines := map[string]bool{}
	for i := range 64 {
		id := NewIdentity(strings.Repeat("x", i), "", nil)
		m := id.Stainless["X-Stainless-Os"] + "/" + id.Stainless["X-Stainless-Arch"]
		switch m {
		case "Linux/x64", "Linux/arm64", "MacOS/arm64", "MacOS/x64", "Windows/x64":
		default:
			t.Errorf("implausible machine %q", m)
		}
		machines[m] = true
	}
	if len(machines) < 3 {
		t.Errorf("64 accounts show only %d machines: %v", len(machines), machines)
	}

	// A real Claude Code client's headers win; anything else is ignored.
	captured := claudeCodeHeaders()
	captured.Set("X-Stainless-Os", "MacOS")
	captured.Set("X-Stainless-Arch", "arm64")
	c := NewIdentity("acct-a", accountUUID, captured)
	if c.UserAgent != "claude-cli/2.1.332 (external, sdk-cli)" || c.Stainless["X-Stainless-Os"] != "MacOS" ||
		c.Stainless["X-Stainless-Arch"] != "arm64" || c.DeviceID != a1.DeviceID {
		t.Errorf("captured identity = %+v", c)
	}
	if _, ok := c.Stainless["X-Stainless-Retry-Count"]; ok {
		t.Error("per-request header taken into the fingerprint")
	}
	s := NewIdentity("acct-a", accountUUID, sdkHeaders())
	if s.UserAgent != a1.UserAgent || s.Stainless["X-Stainless-Package-Version"] != "0.128.0" {
		t.Errorf("identity took an SDK's headers: %+v", s)
	}
}

func TestApplyIdentity(t *testing.T) {
	id := NewIdentity("acct-a", "", nil)
	h := sdkHeaders()
	ApplyIdentity(h, id)
	if h.Get("User-Agent") != id.UserAgent || h.Get("X-Stainless-Package-Version") != "0.128.0" ||
		h.Get("X-Stainless-Os") != id.Stainless["X-Stainless-Os"] || h.Get("X-Stainless-Timeout") != "600" {
		t.Errorf("headers after ApplyIdentity: %v", h)
	}
}

func TestDeriveSessionID(t *testing.T) {
	s := DeriveSessionID("acct-a", clientSession)
	if !uuidV4.MatchString(s) {
		t.Errorf("%q is not UUIDv4-shaped", s)
	}
	if s != DeriveSessionID("acct-a", clientSession) {
		t.Error("not stable")
	}
	if s == DeriveSessionID("acct-b", clientSession) || s == DeriveSessionID("acct-a", "other") {
		t.Error("collides across accounts or sessions")
	}
}

func TestRewriteUserID(t *testing.T) {
	const acct = "acct-a"
	id := NewIdentity(acct, accountUUID, nil)
	newSess := DeriveSessionID(acct, clientSession)
	jsonForm := func(dev, acc, sess string) string {
		return `{"device_id":"` + dev + `","account_uuid":"` + acc + `","session_id":"` + sess + `"}`
	}
	tests := []struct {
		name string
		in   []byte
		want string // the new metadata.user_id; "" = body must come back unchanged
	}{
		{"json form of 2.1.332", ccBody(jsonForm(clientDevice, "", clientSession)),
			jsonForm(id.DeviceID, accountUUID, newSess)},
		{"json form keeps extra keys and order", ccBody(`{"session_id":"` + clientSession + `","x":[1],"device_id":"d","account_uuid":"old"}`),
			`{"session_id":"` + newSess + `","x":[1],"device_id":"` + id.DeviceID + `","account_uuid":"` + accountUUID + `"}`},
		{"json form, empty session uses the key", ccBody(jsonForm(clientDevice, "", "")),
			jsonForm(id.DeviceID, accountUUID, DeriveSessionID(acct, "sticky"))},
		{"legacy with account", ccBody("user_" + clientDevice + "_account_9f1c2d3e-0000-4000-8000-000000000001_session_" + clientSession),
			"user_" + id.DeviceID + "_account_" + accountUUID + "_session_" + newSess},
		{"legacy with empty account", ccBody("user_" + clientDevice + "_account__session_" + clientSession),
			"user_" + id.DeviceID + "_account_" + accountUUID + "_session_" + newSess},
		{"missing user_id", []byte(`{"model":"m","metadata":{"a":1},"messages":[]}`),
			jsonForm(id.DeviceID, accountUUID, DeriveSessionID(acct, "sticky"))},
		{"missing metadata", []byte(`{"model":"m","messages":[]}`),
			jsonForm(id.DeviceID, accountUUID, DeriveSessionID(acct, "sticky"))},
		{"unknown user id string", ccBody("alice"), ""},
		{"legacy with short device", ccBody("user_abc_account__session_" + clientSession), ""},
		{"json without session", ccBody(`{"device_id":"d"}`), ""},
		{"json with numeric session", ccBody(`{"session_id":5}`), ""},
		{"json with numeric device", ccBody(`{"session_id":"s","device_id":5}`), ""},
		{"user id not a string", []byte(`{"metadata":{"user_id":42}}`), ""},
		{"user id null", []byte(`{"metadata":{"user_id":null}}`), ""},
		{"metadata not an object", []byte(`{"metadata":"x"}`), ""},
		{"metadata null", []byte(`{"metadata":null}`), ""},
		{"body an array", []byte(`[{"metadata":{}}]`), ""},
		{"body not json", []byte(`{"metadata":{"user_id":"user_`), ""},
		{"empty body", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.in)
			out := RewriteUserID(tt.in, acct, id, "sticky")
			if !bytes.Equal(tt.in, orig) {
				t.Fatal("input body was modified in place")
			}
			if tt.want == "" {
				if !bytes.Equal(out, tt.in) {
					t.Fatalf("unknown shape changed:\n in %s\nout %s", tt.in, out)
				}
				return
			}
			if !json.Valid(out) {
				t.Fatalf("output is not JSON: %s", out)
			}
			if got := gjson.GetBytes(out, "metadata.user_id").Str; got != tt.want {
				t.Errorf("user_id = %s\n          want %s", got, tt.want)
			}
			// Byte-identical rest: with the field removed from both, the
			// bodies are equal (a new metadata object is removed whole).
			path := "metadata.user_id"
			if !gjson.GetBytes(tt.in, "metadata").Exists() {
				path = "metadata"
			}
			a, _ := sjson.DeleteBytes(bytes.Clone(tt.in), path)
			b, _ := sjson.DeleteBytes(bytes.Clone(out), path)
			if !bytes.Equal(a, b) {
				t.Errorf("rest of body changed:\n in %s\nout %s", a, b)
			}
			if again := RewriteUserID(tt.in, acct, id, "sticky"); !bytes.Equal(again, out) {
				t.Error("same input gave a different output")
			}
		})
	}
}

func TestRewriteUserIDAcrossAccounts(t *testing.T) {
	body := ccBody(`{"device_id":"` + clientDevice + `","account_uuid":"","session_id":"` + clientSession + `"}`)
	sessions := map[string]string{}
	for _, acct := range []string{"acct-a", "acct-b", "acct-c"} {
		out := RewriteUserID(body, acct, NewIdentity(acct, "", nil), "")
		s := UserIDSession(gjson.GetBytes(out, "metadata.user_id").Str)
		if !uuidV4.MatchString(s) || s == clientSession {
			t.Errorf("%s: session %q", acct, s)
		}
		if prev, ok := sessions[s]; ok {
			t.Errorf("%s and %s share session %s", prev, acct, s)
		}
		sessions[s] = acct
	}
}

func TestUserIDSession(t *testing.T) {
	for in, want := range map[string]string{
		`{"device_id":"d","account_uuid":"","session_id":"s-1"}`:      "s-1",
		"user_" + clientDevice + "_account__session_" + clientSession: clientSession,
		"alice":             "",
		`{"session_id":7}`:  "",
		`{"session_id":"x"`: "",
		"":                  "",
	} {
		if got := UserIDSession(in); got != want {
			t.Errorf("UserIDSession(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRewriteUserID(f *testing.F) {
	f.Add(ccBody(`{"device_id":"`+clientDevice+`","account_uuid":"","session_id":"`+clientSession+`"}`), "acct", "k")
	f.Add(ccBody("user_"+clientDevice+"_account__session_"+clientSession), "acct", "")
	f.Add([]byte(`{"metadata":{"user_id":"{\"session_id\":\"\\u0000\"}"}}`), "", "")
	f.Add([]byte(`{"metadata":{"user_id":"x","user_id":"y"}}`), "a", "b")
	f.Add([]byte(`{"metadata":{}}`), "a\"b", "\x00")
	f.Add([]byte(`{}`), "", "")
	f.Add([]byte(`[]`), "", "")
	f.Add([]byte(`{"a.b":{"user_id":1},"metadata":{"user_id":"{}"}}`), "a", "b")
	f.Fuzz(func(t *testing.T, body []byte, accountID, sessionKey string) {
		id := NewIdentity(accountID, accountID, nil)
		out := RewriteUserID(body, accountID, id, sessionKey)
		if json.Valid(body) && !json.Valid(out) {
			t.Fatalf("valid input, invalid output:\n in %q\nout %q", body, out)
		}
		// Only metadata.user_id may differ (when metadata existed).
		if !bytes.Equal(out, body) && gjson.GetBytes(body, "metadata").Exists() {
			a, _ := sjson.DeleteBytes(bytes.Clone(body), "metadata.user_id")
			b, _ := sjson.DeleteBytes(bytes.Clone(out), "metadata.user_id")
			if !bytes.Equal(a, b) {
				t.Fatalf("more than user_id changed:\n in %q\nout %q", body, out)
			}
		}
	})
}

func TestPrepareNonClaudeCode(t *testing.T) {
	identity := `[{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude."}]`
	sys1h := `{"type":"text","text":"You are Cherry, a helpful \"assistant\".","cache_control":{"type":"ephemeral","ttl":"1h"}}`
	sys5m := `{"type":"text","text":"Reply in 日本語.","cache_control":{"type":"ephemeral","ttl":"5m"}}`
	msgs := `[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]`
	rest := `"model":"claude-sonnet-4-5","max_tokens":99,"top_p":0.9,"tools":[{"name":"t","input_schema":{"type":"object"}}],"metadata":{"user_id":"u"}`

	tests := []struct {
		name      string
		in        string
		wantSys   string   // raw system after
		moved     []string // raw blocks expected after the marker in messages[0]
		unchanged bool
		err       bool
	}{
		{"array system with ttls", `{` + rest + `,"system":[` + sys1h + `,` + sys5m + `],"messages":` + msgs + `}`,
			identity, []string{sys1h, sys5m}, false, false},
		{"string system", `{` + rest + `,"system":"Be terse.\nAlways.","messages":` + msgs + `}`,
			identity, []string{`{"type":"text","text":"Be terse.\nAlways."}`}, false, false},
		{"identity already leads", `{` + rest + `,"system":` + identity[:len(identity)-1] + `,` + sys1h + `],"messages":` + msgs + `}`,
			identity, []string{sys1h}, false, false},
		{"no system", `{` + rest + `,"messages":` + msgs + `}`, identity, nil, false, false},
		{"empty string system", `{` + rest + `,"system":"","messages":` + msgs + `}`, identity, nil, false, false},
		{"only the identity block", `{` + rest + `,"system":` + identity + `,"messages":` + msgs + `}`, identity, nil, true, false},
		{"system but no messages", `{` + rest + `,"system":"x"}`, "", nil, false, true},
		{"system a number", `{"system":5,"messages":[]}`, "", nil, false, true},
		{"not json", `{"system":`, "", nil, false, true},
		{"not an object", `[1]`, "", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := PrepareNonClaudeCode([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrNotMessagesBody) {
					t.Fatalf("err = %v, want ErrNotMessagesBody", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			if tt.unchanged && string(out) != tt.in {
				t.Errorf("body changed: %s", out)
			}
			if got := gjson.GetBytes(out, "system").Raw; got != tt.wantSys {
				t.Errorf("system = %s, want %s", got, tt.wantSys)
			}
			// Everything but system and messages is byte-identical.
			a, _ := sjson.Delete(tt.in, "system")
			a, _ = sjson.Delete(a, "messages")
			b, _ := sjson.DeleteBytes(out, "system")
			b, _ = sjson.DeleteBytes(b, "messages")
			if a != string(b) {
				t.Errorf("rest changed:\n in %s\nout %s", a, b)
			}
			m := gjson.GetBytes(out, "messages").Array()
			if tt.moved == nil {
				if gjson.GetBytes(out, "messages").Raw != msgs {
					t.Errorf("messages changed without a system to move: %s", gjson.GetBytes(out, "messages").Raw)
				}
			} else {
				if len(m) != 3 || m[0].Get("role").Str != "user" || m[1].Get("role").Str != "assistant" || m[2].Raw != gjson.Get(msgs, "0").Raw {
					t.Fatalf("messages = %s", gjson.GetBytes(out, "messages").Raw)
				}
				content := m[0].Get("content").Array()
				if len(content) != len(tt.moved)+1 || !strings.HasPrefix(content[0].Get("text").Str, "[System Instructions]") {
					t.Fatalf("leading turn = %s", m[0].Raw)
				}
				for i, want := range tt.moved {
					if content[i+1].Raw != want { // raw: cache_control ttl untouched
						t.Errorf("moved block %d = %s, want %s", i, content[i+1].Raw, want)
					}
				}
			}
			if n := strings.Count(string(out), `"cache_control"`); n != strings.Count(tt.in, `"cache_control"`) {
				t.Errorf("cache_control count %d, was %d", n, strings.Count(tt.in, `"cache_control"`))
			}
			again, err := PrepareNonClaudeCode(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("not idempotent: %v\n1st %s\n2nd %s", err, out, again)
			}
			if !IsClaudeCode(http.Header{"User-Agent": {"claude-cli/2.1.332 (external, cli)"}}, out) {
				t.Error("result does not look like Claude Code")
			}
		})
	}
}

// BenchmarkRewriteUserID runs the rewrite on a body the size Claude Code
// 2.1.332 sends for a one-line prompt (about 49 KB).
func BenchmarkRewriteUserID(b *testing.B) {
	body := ccBody(`{"device_id":"` + clientDevice + `","account_uuid":"","session_id":"` + clientSession + `"}`)
	body, _ = sjson.SetBytes(body, "pad", strings.Repeat("x", 49<<10-len(body)))
	id := NewIdentity("acct-a", accountUUID, nil)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		RewriteUserID(body, "acct-a", id, "")
	}
}
