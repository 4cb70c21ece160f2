package netx

import (
	"net/url"
	"strings"
	"testing"
)

func TestValidateProxyURL(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // substring of the error; "" = valid
	}{
		{"", ""},
		{"http://127.0.0.1:8080", ""},
		{"http://proxy.example.com:3128/", ""},
		{"https://user:pw@proxy.example.com:443", ""},
		{"socks5://127.0.0.1:1080", ""},
		{"socks5://alice:s3cr%40t@10.0.0.1:1080", ""},
		{"socks5h://alice:pw@proxy.example.com:1080", ""},
		{"SOCKS5://Proxy.Example.com:1080", ""},
		{"http://[::1]:8080", ""},
		{"http://user@host:8080", ""},

		{"ftp://host:21", `scheme "ftp" is not supported`},
		{"socks4://host:1080", `scheme "socks4" is not supported`},
		{"http://host", "port is missing"},
		{"socks5://user:pw@host", "port is missing"},
		{"http://:8080", "host is empty"},
		{"socks5://user:pw@:1080", "host is empty"},
		{"host:1080", "has no scheme"},
		{"127.0.0.1:1080", "has no scheme"},
		{"not a url", "has no scheme"},
		{"http://host:0", "port"},
		{"http://host:65536", "port"},
		{"http://host:abc", "malformed"},
		{"http://host:8080/path", "unexpected path"},
		{"http://host:8080?x=1", "unexpected query"},
		{"http://host:8080#frag", "unexpected query or fragment"},
		{"socks5://:pw@host:1080", "user name is empty"},
		{" socks5://host:1080", "surrounding spaces"},
		{"socks5://host:1080\n", "surrounding spaces"},
		{"http://ho st:80", "malformed"},
		{"socks5://u:" + strings.Repeat("p", 256) + "@host:1080", "at most 255 bytes"},
		{"http:///", "host is empty"},
		{"://host:80", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidateProxyURL(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateProxyURL(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateProxyURL(%q) = nil, want error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateProxyURL(%q) = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

// The error text is shown to whoever typed the URL and may land in logs: it
// must name the problem without repeating the password.
func TestValidateProxyURLNeverEchoesPassword(t *testing.T) {
	const pw = "Zq9-very-secret"
	for _, in := range []string{
		"ftp://bob:" + pw + "@host:21",
		"socks5://bob:" + pw + "@host",
		"socks5://bob:" + pw + "@:1080",
		"http://bob:" + pw + "@host:8080/x",
		"http://bob:" + pw + "@ho st:8080",
		"http://bob:" + pw + "@host:99999",
		"bob:" + pw + "@host:1080",
		"socks5://bob:" + pw + "@host:1080 ",
		"http://bob:" + pw + "@host:abc",
		"http://bob:" + pw + "@host:80\x7f",
	} {
		err := ValidateProxyURL(in)
		if err == nil {
			t.Fatalf("ValidateProxyURL(%q) = nil, want error", in)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("ValidateProxyURL(%q) leaks the password: %q", in, err)
		}
	}
}

func TestRedactProxyURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"socks5://user:hunter2@host:1080", "socks5://user:***@host:1080"},
		{"socks5h://user:hunter2@host:1080", "socks5h://user:***@host:1080"},
		{"http://user:p%40ss@proxy.example.com:3128", "http://user:***@proxy.example.com:3128"},
		{"http://user@host:8080", "http://user@host:8080"},
		{"http://host:8080", "http://host:8080"},
		{"host:1080", "host:1080"},
		{"socks5://user:p@ss@host:1080", "socks5://user:***@host:1080"},
		{"socks5://user:hunter2@", "socks5://***@"},
		{"user:hunter2@host:1080", "***@host:1080"},
		{"user:hunter2", "***"},
		{"http://us er:hunter2@host:80", "http://***@host:80"},
	}
	for _, tt := range tests {
		if got := RedactProxyURL(tt.in); got != tt.want {
			t.Errorf("RedactProxyURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRedactProxyURL checks the one promise that matters: a password that the
// URL parser finds never appears in the output, unless it also appears in a
// part that is meant to be shown (scheme, user name, host).
func FuzzRedactProxyURL(f *testing.F) {
	for _, s := range []string{
		"socks5://user:hunter2@host:1080", "http://a:b@c:1", "user:pass@host",
		"socks5://u:p@ss@h:1", "http://u:%41%42@h:1", "x://:secret@", "socks5://u:pw@[::1]:1080",
		"//:@00@00", // a "password" made only of the separator and the host
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactProxyURL(s)
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			return
		}
		pw, ok := u.User.Password()
		if !ok || len(pw) < 3 || !strings.Contains(out, pw) {
			return
		}
		// What may be shown is everything but the password, joined as the
		// redacted form joins it: a "password" that is only made of those
		// parts (say "@00" before host "00") is not leaked by showing them.
		shown := u.Scheme + "://" + u.User.Username() + ":***@" + u.Host + u.EscapedPath()
		if !strings.Contains(shown, pw) && !strings.Contains(strings.ToLower(shown), strings.ToLower(pw)) {
			t.Fatalf("RedactProxyURL(%q) = %q leaks password %q", s, out, pw)
		}
	})
}
