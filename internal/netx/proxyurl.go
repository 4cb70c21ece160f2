package netx

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Proxy URL schemes crs accepts for an account's outbound proxy.
const (
	schemeHTTP    = "http"    // HTTP forward proxy, plain TCP to the proxy
	schemeHTTPS   = "https"   // HTTP forward proxy reached over TLS
	schemeSOCKS5  = "socks5"  // SOCKS5, target names resolved locally
	schemeSOCKS5H = "socks5h" // SOCKS5, target names resolved by the proxy
)

// ValidateProxyURL reports whether s is a proxy URL crs can use, with an error
// text meant for the person who typed it (`crs accounts add --proxy`): it names
// the part that is wrong and never repeats the password.
//
// Accepted: http://, https://, socks5:// and socks5h:// with an explicit host
// and port, optional user[:password], and nothing after the port but an
// optional "/". The empty string is valid and means "no proxy" (direct), the
// same meaning Pool.Transport gives it.
func ValidateProxyURL(s string) error {
	_, err := parseProxyURL(s)
	return err
}

// parseProxyURL validates s and returns it parsed, with scheme and host
// lower-cased so that spellings of one proxy share one transport. It returns
// (nil, nil) for "", meaning direct.
func parseProxyURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	shown := RedactProxyURL(s)
	if strings.TrimSpace(s) != s {
		return nil, fmt.Errorf("proxy URL %q: remove the surrounding spaces", shown)
	}
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("proxy URL %q has no scheme: write it as socks5://host:port or http://host:port", shown)
	}
	u, err := url.Parse(s)
	if err != nil {
		// *url.Error repeats the whole input, password included; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("proxy URL %q is malformed: %v", shown, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch u.Scheme {
	case schemeHTTP, schemeHTTPS, schemeSOCKS5, schemeSOCKS5H:
	default:
		return nil, fmt.Errorf("proxy URL %q: scheme %q is not supported (use http, https, socks5 or socks5h)", shown, u.Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("proxy URL %q is malformed: expected %s://host:port", shown, u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, fmt.Errorf("proxy URL %q: host is empty", shown)
	}
	if port == "" {
		return nil, fmt.Errorf("proxy URL %q: port is missing (e.g. %s://%s:%s)", shown, u.Scheme, u.Host, examplePort(u.Scheme))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("proxy URL %q: port %q is not a number from 1 to 65535", shown, port)
	}
	if strings.ContainsAny(host, " \t") {
		return nil, fmt.Errorf("proxy URL %q: host %q contains spaces", shown, host)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("proxy URL %q: unexpected path %q after the port", shown, u.Path)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("proxy URL %q: unexpected query or fragment after the port", shown)
	}
	if u.User != nil {
		name := u.User.Username()
		pass, _ := u.User.Password()
		if name == "" {
			return nil, fmt.Errorf("proxy URL %q: user name is empty (write user:password@ or leave out the @)", shown)
		}
		if isSOCKS(u.Scheme) && (len(name) > 255 || len(pass) > 255) {
			// RFC 1929 carries each in a single length byte.
			return nil, fmt.Errorf("proxy URL %q: SOCKS5 user name and password must be at most 255 bytes each", shown)
		}
	}
	u.Host = strings.ToLower(u.Host)
	u.Path, u.RawPath = "", ""
	return u, nil
}

func examplePort(scheme string) string {
	if isSOCKS(scheme) {
		return "1080"
	}
	return "8080"
}

func isSOCKS(scheme string) bool { return scheme == schemeSOCKS5 || scheme == schemeSOCKS5H }

// RedactProxyURL returns s fit for display and logs: the password, if any, is
// replaced by "***" ("socks5://user:***@host:1080"). It never returns the
// password, even for input that does not parse: then everything before the
// last "@" of the authority is masked.
func RedactProxyURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err == nil && u.Opaque == "" && u.Host != "" {
		if u.User == nil {
			return s
		}
		if _, has := u.User.Password(); !has {
			return s
		}
		var b strings.Builder
		b.WriteString(u.Scheme)
		b.WriteString("://")
		b.WriteString(url.User(u.User.Username()).String())
		b.WriteString(":***@")
		b.WriteString(u.Host)
		b.WriteString(u.EscapedPath())
		return b.String()
	}
	// Unparseable: mask all of what could be userinfo.
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return prefix + "***" + rest[at:]
	}
	if prefix == "" {
		// No scheme and no "@": "host:1080" is a common slip and safe to echo;
		// anything else might be a bare "user:password", so show nothing.
		if i := strings.LastIndex(s, ":"); i >= 0 && !allDigits(s[i+1:]) {
			return "***"
		}
	}
	return s
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// hostPort returns the proxy's dial address.
func hostPort(u *url.URL) string { return net.JoinHostPort(u.Hostname(), u.Port()) }
