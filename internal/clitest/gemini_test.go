package clitest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

func TestGeminiSettingsJSON(t *testing.T) {
	tests := []struct {
		mode         GeminiMode
		selectedType string // "" = must not be set
	}{
		{GeminiAPIKey, "gemini-api-key"},
		{GeminiCodeAssist, ""},
	}
	for _, tc := range tests {
		s, err := GeminiSettingsJSON(tc.mode)
		if err != nil || !json.Valid([]byte(s)) {
			t.Fatalf("%s: %v %q", tc.mode, err, s)
		}
		if v := gjson.Get(s, "privacy.usageStatisticsEnabled"); v.Type != gjson.False {
			t.Errorf("%s: usage statistics not off: %s", tc.mode, s)
		}
		if got := gjson.Get(s, "security.auth.selectedType").String(); got != tc.selectedType {
			t.Errorf("%s: selectedType %q, want %q", tc.mode, got, tc.selectedType)
		}
	}
	if _, err := GeminiSettingsJSON("oauth"); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// TestGeminiPPong runs the real Gemini CLI in each mode straight against
// the fake Gemini API and Code Assist backend (no relay), so a failure here
// is the harness's or the CLI's, not crs's: exit 0, the fake's reply on
// stdout, the key where the mode sends it, the model router's JSON call and
// the streamed answer, and no host tried beyond the mode's known one.
func TestGeminiPPong(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Gemini CLI")
	}
	t.Parallel()
	bin := InstallGemini(t)
	tests := []struct {
		mode       GeminiMode
		authHeader string
		authValue  string
		// generate and stream are the path suffixes of the router call and
		// of the answer.
		generate, stream string
	}{
		{GeminiAPIKey, "X-Goog-Api-Key", "cr_test", ":generateContent", ":streamGenerateContent"},
		{GeminiCodeAssist, "Authorization", "Bearer cr_test", "/v1internal:generateContent", "/v1internal:streamGenerateContent"},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			fake := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{APIKeys: []string{"cr_test"}})
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			home := t.TempDir()

			res, err := RunGeminiP(ctx, bin, tc.mode, fake.URL(), "cr_test", "say pong", home)
			if err != nil {
				t.Fatalf("RunGeminiP: %v\nstdout: %s\nstderr: %s\negress: %q", err, res.Stdout, res.Stderr, res.Egress)
			}
			t.Logf("gemini -p took %s; egress %q", res.Elapsed.Round(time.Millisecond), res.Egress)
			want := fakeupstream.ReplyText(5)
			if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != want {
				t.Fatalf("exit %d, stdout %q; want 0 and %q\nstderr: %s", res.ExitCode, res.Stdout, want, res.Stderr)
			}
			if extra := res.UnknownEgress(tc.mode.KnownEgress()); len(extra) != 0 {
				t.Errorf("Gemini CLI tried to reach %q", extra)
			}
			if _, err := os.Stat(filepath.Join(home, ".gemini", "settings.json")); err != nil {
				t.Errorf("settings.json not in HOME: %v", err)
			}

			var router, stream int
			for _, r := range fake.Requests() {
				if got := r.Header.Get(tc.authHeader); got != tc.authValue {
					t.Errorf("%s %s: %s = %q, want %q", r.Method, r.Path, tc.authHeader, got, tc.authValue)
				}
				switch {
				case strings.HasSuffix(r.Path, tc.generate):
					router++
					schema := gjson.GetBytes(r.Body, "generationConfig.responseJsonSchema")
					if tc.mode == GeminiCodeAssist {
						schema = gjson.GetBytes(r.Body, "request.generationConfig.responseJsonSchema")
					}
					if !schema.Exists() {
						t.Errorf("the generateContent call is not the model router's JSON-schema call: %s", r.Body)
					}
				case strings.HasSuffix(r.Path, tc.stream) && r.RawQuery == "alt=sse":
					stream++
				}
			}
			if router != 1 || stream != 1 || fake.MessageCount() != 2 {
				t.Errorf("router calls %d, streams %d, generate calls %d; want 1, 1, 2", router, stream, fake.MessageCount())
			}
		})
	}
}
