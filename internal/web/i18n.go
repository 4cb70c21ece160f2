package web

import (
	"fmt"
	"net/http"
	"strings"
)

// Languages the console speaks. English is the fallback.
const (
	langEN = "en"
	langZH = "zh-CN"
)

// msg is one user-facing message in both languages.
type msg struct{ en, zh string }

// catalog holds every user-facing message of the console; messages.go and
// the page files add to it. A test proves each has both languages and that
// every key a template or handler uses exists.
var catalog = map[string]msg{}

// messages adds to the catalog; a key defined twice is a bug found at start.
func messages(m map[string]msg) {
	for k, v := range m {
		if _, dup := catalog[k]; dup {
			panic("web: message " + k + " defined twice")
		}
		catalog[k] = v
	}
}

// translate returns key's text in lang, formatted with args (fmt verbs).
// An unknown key shows itself, so a missing message is visible, and a test
// fails on it.
func translate(lang, key string, args ...any) string {
	m, ok := catalog[key]
	if !ok {
		return key
	}
	s := m.en
	if lang == langZH {
		s = m.zh
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// pickLang is the crs_lang cookie's language, else the first of
// Accept-Language's that the console speaks (any zh is Simplified
// Chinese), else English.
func pickLang(r *http.Request) string {
	if ck, err := r.Cookie(cookieLang); err == nil {
		if ck.Value == langZH || ck.Value == langEN {
			return ck.Value
		}
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		tag = strings.ToLower(tag)
		switch {
		case strings.HasPrefix(tag, "zh"):
			return langZH
		case strings.HasPrefix(tag, "en"):
			return langEN
		}
	}
	return langEN
}
