package gemini

import (
	"strings"
	"testing"
)

func TestParseNativePath(t *testing.T) {
	tests := []struct {
		path                   string
		version, model, action string
		ok                     bool
	}{
		{"/v1beta/models/gemini-2.5-pro:generateContent", "v1beta", "gemini-2.5-pro", "generateContent", true},
		{"/v1beta/models/gemini-3.8-flash:streamGenerateContent", "v1beta", "gemini-3.8-flash", "streamGenerateContent", true},
		{"/v1/models/gemini-2.5-flash-lite:countTokens", "v1", "gemini-2.5-flash-lite", "countTokens", true},
		{"/v1beta/models/gemini-2.0-flash-001:generateContent", "v1beta", "gemini-2.0-flash-001", "generateContent", true},
		{"/v1beta/models/learnlm_2.0_flash:generateContent", "v1beta", "learnlm_2.0_flash", "generateContent", true},
		{"/v1beta/models/Gemini-X:generateContent", "v1beta", "Gemini-X", "generateContent", true},
		{"/v1beta/models/gemini-2.5-pro:embedContent", "", "", "", false},
		{"/v1beta/models/gemini-2.5-pro:generatecontent", "", "", "", false},
		{"/v1beta/models/gemini-2.5-pro", "", "", "", false},
		{"/v1beta/models/gemini-2.5-pro:", "", "", "", false},
		{"/v1beta/models/:generateContent", "", "", "", false},
		{"/v1beta/models/..:generateContent", "", "", "", false},
		{"/v1beta/models/.hidden:generateContent", "", "", "", false},
		{"/v1beta/models/-x:generateContent", "", "", "", false},
		{"/v1beta/models/a/b:generateContent", "", "", "", false},
		{"/v1beta/models/../../x:generateContent", "", "", "", false},
		{"/v1beta/models/a%2Fb:generateContent", "", "", "", false},
		{"/v1beta/models/a:b:generateContent", "", "", "", false},
		{"/v1beta/models/gemini-2.5-pro:generateContent/", "", "", "", false},
		{"/v1beta/models/gemini-2.5-pro:generateContent?alt=sse", "", "", "", false},
		{"/v1alpha/models/gemini-2.5-pro:generateContent", "", "", "", false},
		{"/v2/models/gemini-2.5-pro:generateContent", "", "", "", false},
		{"/v1beta/tunedModels/x:generateContent", "", "", "", false},
		{"v1beta/models/gemini-2.5-pro:generateContent", "", "", "", false},
		{"//v1beta/models/gemini-2.5-pro:generateContent", "", "", "", false},
		{"/v1beta/models", "", "", "", false},
		{"/v1internal:generateContent", "", "", "", false},
		{"", "", "", "", false},
	}
	for _, tt := range tests {
		v, m, a, ok := ParseNativePath(tt.path)
		if v != tt.version || m != tt.model || a != tt.action || ok != tt.ok {
			t.Errorf("ParseNativePath(%q) = %q %q %q %v, want %q %q %q %v", tt.path, v, m, a, ok, tt.version, tt.model, tt.action, tt.ok)
		}
	}
}

func TestParseCodeAssistPath(t *testing.T) {
	for _, m := range []string{"loadCodeAssist", "onboardUser", "generateContent", "streamGenerateContent", "countTokens",
		"retrieveUserQuota", "listExperiments", "fetchAdminControls", "recordCodeAssistMetrics"} {
		if got, ok := ParseCodeAssistPath("/v1internal:" + m); !ok || got != m {
			t.Errorf("%s: got %q %v", m, got, ok)
		}
	}
	for _, p := range []string{
		"/v1internal:setCodeAssistGlobalUserSetting", // would change the shared account's settings
		"/v1internal:getCodeAssistGlobalUserSetting",
		"/v1internal/operations/onboard-1",
		"/v1internal:",
		"/v1internal:generateContent/",
		"/v1internal:GenerateContent",
		"/v1internal::generateContent",
		"/v1beta/models/gemini-2.5-pro:generateContent",
		"/x/v1internal:generateContent",
		"v1internal:generateContent",
		"",
	} {
		if got, ok := ParseCodeAssistPath(p); ok || got != "" {
			t.Errorf("ParseCodeAssistPath(%q) = %q %v, want refused", p, got, ok)
		}
	}
}

func FuzzParsePaths(f *testing.F) {
	f.Add("/v1beta/models/gemini-2.5-pro:streamGenerateContent")
	f.Add("/v1/models/a.b-c_d:countTokens")
	f.Add("/v1internal:loadCodeAssist")
	f.Fuzz(func(t *testing.T, path string) {
		if v, m, a, ok := ParseNativePath(path); ok {
			// What is accepted rebuilds the path exactly, and the model
			// cannot change the URL's shape.
			if "/"+v+"/models/"+m+":"+a != path {
				t.Fatalf("%q parsed as %q %q %q", path, v, m, a)
			}
			if strings.ContainsAny(m, "/:?#%\\ ") || strings.HasPrefix(m, ".") {
				t.Fatalf("model %q accepted", m)
			}
		}
		if m, ok := ParseCodeAssistPath(path); ok {
			if "/v1internal:"+m != path || !validMethod(m) {
				t.Fatalf("%q parsed as %q", path, m)
			}
		}
	})
}

func TestRenameNativePath(t *testing.T) {
	tests := []struct {
		path, model, want string
		ok                bool
	}{
		{"/v1beta/models/team-flash:generateContent", "gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent", true},
		{"/v1/models/a:streamGenerateContent", "gemini-2.5-pro", "/v1/models/gemini-2.5-pro:streamGenerateContent", true},
		{"/v1beta/models/a:countTokens", "b_1.5", "/v1beta/models/b_1.5:countTokens", true},
		// A mapped name that would reshape the URL is refused.
		{"/v1beta/models/a:generateContent", "models/b", "", false},
		{"/v1beta/models/a:generateContent", "b:streamGenerateContent", "", false},
		{"/v1beta/models/a:generateContent", "../b", "", false},
		{"/v1beta/models/a:generateContent", "", "", false},
		// Not a native path.
		{"/v1internal:generateContent", "b", "", false},
		{"/v1beta/models/a:embedContent", "b", "", false},
	}
	for _, tt := range tests {
		got, ok := RenameNativePath(tt.path, tt.model)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RenameNativePath(%q, %q) = %q, %v; want %q, %v", tt.path, tt.model, got, ok, tt.want, tt.ok)
		}
	}
}
