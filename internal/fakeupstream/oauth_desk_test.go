package fakeupstream

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// tokenServer is what the desk gives every fake OAuth server.
type tokenServer interface {
	TokenURL() string
	FailNext(status int, body string)
	RefreshCalls() int
	ExchangeCalls() int
	TokenRequests() []Request
}

// TestTokenDeskAcrossProviders checks, for all three fake OAuth servers,
// that a queued failure answers with the provider's generic error and
// content type, and that every token request is recorded while only
// parsed grants are counted.
func TestTokenDeskAcrossProviders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		srv       tokenServer
		ctype     string
		refresh   string
		failBody  string
		failCtype string
	}{
		{"claude", StartOAuth(t), "application/json", `{"grant_type":"refresh_token"}`,
			`{"error":"server_error"}`, "application/json"},
		{"openai", StartOpenAIOAuth(t), "application/x-www-form-urlencoded", "grant_type=refresh_token",
			`{"error":"server_error"}`, "application/json"},
		{"google", StartGoogleOAuth(t), "application/x-www-form-urlencoded", "grant_type=refresh_token",
			`{"error":"internal_failure"}`, "application/json; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			post := func(ctype, body string) (int, string, string) {
				t.Helper()
				resp, err := http.Post(tc.srv.TokenURL(), ctype, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
			}
			tc.srv.FailNext(503, "")
			tc.srv.FailNext(502, `{"error":"custom"}`)
			if st, ct, b := post(tc.ctype, tc.refresh); st != 503 || ct != tc.failCtype || b != tc.failBody {
				t.Errorf("first fault: %d %q %s", st, ct, b)
			}
			if st, _, b := post(tc.ctype, tc.refresh); st != 502 || b != `{"error":"custom"}` {
				t.Errorf("second fault: %d %s", st, b)
			}
			if st, _, _ := post(tc.ctype, tc.refresh); st == 502 || st == 503 {
				t.Errorf("third request still failed by fault: %d", st)
			}
			post("text/plain", "not a grant")
			if n := tc.srv.RefreshCalls(); n != 3 {
				t.Errorf("RefreshCalls = %d, want 3", n)
			}
			if n := tc.srv.ExchangeCalls(); n != 0 {
				t.Errorf("ExchangeCalls = %d, want 0", n)
			}
			reqs := tc.srv.TokenRequests()
			if len(reqs) != 4 || string(reqs[3].Body) != "not a grant" || reqs[0].Method != http.MethodPost {
				t.Errorf("recorded %d requests: %+v", len(reqs), reqs)
			}
		})
	}
}
