package gemini

import (
	"net/http"
	"strings"
	"testing"
)

func TestSessionID(t *testing.T) {
	first := `{"role":"user","parts":[{"text":"This is the Gemini CLI. We are setting up the context for our chat."}]}`
	second := `{"role":"model","parts":[{"text":"Got it."}]}`
	third := `{"role":"user","parts":[{"text":"say pong"}]}`
	turn1 := `{"contents":[` + first + `]}`
	turn2 := `{"contents":[` + first + `,` + second + `,` + third + `]}`
	other := `{"contents":[{"role":"user","parts":[{"text":"another conversation"}]}]}`
	ca := func(sessionID, promptID, contents string) string {
		req := `{"contents":` + contents
		if sessionID != "" {
			req += `,"session_id":"` + sessionID + `"`
		}
		b := `{"model":"gemini-2.5-pro","project":"p",`
		if promptID != "" {
			b += `"user_prompt_id":"` + promptID + `",`
		}
		return b + `"request":` + req + `}}`
	}
	long := strings.Repeat("s", 200)

	tests := []struct {
		name string
		body string
		want string // "" none; "=X" same id as case X above
	}{
		{"code assist session_id", ca("5a1e-session", "5a1e-session########3", `[`+first+`]`), "5a1e-session"},
		{"session_id wins over prompt id", ca("s1", "other########1", `[]`), "s1"},
		{"prompt id session part", ca("", "5a1e-session########7", `[`+first+`]`), "5a1e-session"},
		{"prompt id without a session part", ca("", "8c0ffee1", `[`+first+`]`), "8c0ffee1"},
		{"prompt id that starts with the separator", ca("", "########1", `[]`), "########1"},
		{"native turn 1", turn1, hashPrompt(first)},
		{"native turn 2, same conversation", turn2, "=native turn 1"},
		{"blank ids fall through to contents", ca(" ", " ", `[`+first+`]`), "=native turn 1"},
		{"code assist contents hash like native", ca("", "", `[`+first+`,`+second+`]`), "=native turn 1"},
		{"whitespace in the array", "{\"contents\":[\n  " + first + " ]}", "=native turn 1"},
		{"too long an id is hashed", ca(long, "", `[]`), hashPrompt(long)},
		{"empty contents", `{"contents":[]}`, ""},
		{"contents not an array", `{"contents":"hi"}`, ""},
		{"nothing", `{"generationConfig":{}}`, ""},
		{"not json", `nope`, ""},
		{"array body", `[{"contents":[1]}]`, ""},
	}
	got := map[string]string{}
	for _, tt := range tests {
		s := SessionID(http.Header{}, []byte(tt.body))
		got[tt.name] = s
		want := tt.want
		if ref, ok := strings.CutPrefix(want, "="); ok {
			want = got[ref]
		}
		if s != want {
			t.Errorf("%s: SessionID = %q, want %q", tt.name, s, want)
		}
	}
	if a, b := SessionID(nil, []byte(turn1)), SessionID(nil, []byte(other)); a == b {
		t.Errorf("two conversations share session %q", a)
	}
}

// TestSessionIDBoundedHash: a first message longer than the hashed prefix
// (an inline image) still names its conversation, and the turns after it
// do not change the name.
func TestSessionIDBoundedHash(t *testing.T) {
	img := strings.Repeat("A", 3*hashPrefix)
	first := `{"role":"user","parts":[{"inlineData":{"mimeType":"image/png","data":"` + img + `"}},{"text":"what is this"}]}`
	a := SessionID(nil, []byte(`{"contents":[`+first+`]}`))
	b := SessionID(nil, []byte(`{"contents":[`+first+`,{"role":"model","parts":[{"text":"a cat"}]}]}`))
	if a == "" || a != b {
		t.Fatalf("turns of one conversation: %q and %q", a, b)
	}
	c := SessionID(nil, []byte(`{"contents":[{"role":"user","parts":[{"text":"x"}]}]}`))
	if c == a {
		t.Fatal("different conversations share a session")
	}
}

func FuzzSessionID(f *testing.F) {
	f.Add([]byte(`{"user_prompt_id":"a########1","request":{"session_id":"s","contents":[{"parts":[{"text":"x"}]}]}}`))
	f.Add([]byte(`{"contents":[ [1], {"a":"]"} ]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := SessionID(nil, body)
		if len(s) > maxSessionID && !strings.HasPrefix(s, "h:") {
			t.Fatalf("unbounded session id of %d bytes", len(s))
		}
		if s != SessionID(http.Header{"X-Anything": {"1"}}, body) {
			t.Fatal("not deterministic")
		}
	})
}
