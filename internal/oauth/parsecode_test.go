package oauth_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/store"
)

func TestParseCodeFor(t *testing.T) {
	const (
		openaiCode = "ac_QRaG0gwoQpuuRJRr449YX7gZv3lH.9sFL-FHyFd3LbgoDSe_mvZYi0I7Iz"
		googleCode = "4/0AVG7fiQx_Rk2hDqAbCdEf-GhIjKlMnOpQ"
	)
	openaiCallback := "http://localhost:1455/auth/callback?code=" + url.QueryEscape(openaiCode) + "&scope=openid+profile+email+offline_access&state=st"
	for _, tc := range []struct {
		name     string
		platform store.Platform
		in       string
		want     string
		errHas   string
	}{
		{"openai raw", store.PlatformOpenAI, openaiCode, openaiCode, ""},
		{"openai callback", store.PlatformOpenAI, openaiCallback, openaiCode, ""},
		{"openai callback without scheme", store.PlatformOpenAI, strings.TrimPrefix(openaiCallback, "http://"), openaiCode, ""},
		{"openai query only", store.PlatformOpenAI, "?code=" + openaiCode + "&state=st", openaiCode, ""},
		{"openai declined", store.PlatformOpenAI, "http://localhost:1455/auth/callback?error=access_denied&state=st", "", `answered error "access_denied"`},
		{"openai slash is not a code character", store.PlatformOpenAI, googleCode, "", "invalid character at position 2"},
		{"google raw", store.PlatformGemini, googleCode, googleCode, ""},
		{"google raw with spaces", store.PlatformGemini, "\t" + googleCode + " \n", googleCode, ""},
		{"google authcode URL", store.PlatformGemini, "https://codeassist.google.com/authcode?code=" + url.QueryEscape(googleCode) + "&scope=x", googleCode, ""},
		{"google dot is not a code character", store.PlatformGemini, openaiCode, "", "allowed: letters, digits, '_', '-' and '/'"},
		{"google too short", store.PlatformGemini, "4/0A", "", "too short"},
		// Claude's rules are unchanged: no '.', no '/', no scheme-less URL.
		{"claude dot", store.PlatformClaude, openaiCode, "", "allowed: letters, digits, '_' and '-')"},
		{"claude slash", store.PlatformClaude, googleCode, "", "invalid character at position 2"},
		{"claude scheme-less URL", store.PlatformClaude, "platform.claude.com/oauth/code/callback?code=abcdefghijkl", "", "invalid character"},
		{"claude declined", store.PlatformClaude, "https://platform.claude.com/oauth/code/callback?error=access_denied", "", "no code parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := oauth.ParseCodeFor(tc.platform, tc.in)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %q, err %v; want error containing %q", got, err, tc.errHas)
				}
				for _, secret := range []string{openaiCode, googleCode} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error echoes the code: %v", err)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// ParseCode is Claude's.
	if got, err := oauth.ParseCode(openaiCode); err == nil {
		t.Errorf("ParseCode took an OpenAI code: %q", got)
	}
}

func FuzzParseCodeFor(f *testing.F) {
	f.Add("openai", "http://localhost:1455/auth/callback?code=ac_abc.def-123&state=x")
	f.Add("gemini", "4/0AVG7fiQabcdef")
	f.Add("gemini", "codeassist.google.com/authcode?code=4%2F0Aabcdefgh")
	f.Add("claude", "abcdefghijkl#state")
	f.Fuzz(func(t *testing.T, platform, in string) {
		p := store.Platform(platform)
		code, err := oauth.ParseCodeFor(p, in)
		if err != nil {
			return
		}
		allowed := "_-"
		switch p {
		case store.PlatformOpenAI:
			allowed += "."
		case store.PlatformGemini:
			allowed += "/"
		}
		if len(code) < 10 {
			t.Fatalf("accepted short %q", code)
		}
		for _, c := range code {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(allowed, c)) {
				t.Fatalf("%s: accepted %q with %q", p, code, c)
			}
		}
	})
}
