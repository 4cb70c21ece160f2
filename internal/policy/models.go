package policy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/crs-relay/crs/internal/store"
)

// checkPermission refuses a route whose pool the key may not use. Routes
// without a pool are not limited.
func checkPermission(key store.Key, req Request) *Denial {
	perms := key.Policy.Permissions
	if len(perms) == 0 || req.Platform == "" || slices.Contains(perms, req.Platform) {
		return nil
	}
	names := make([]string, len(perms))
	for i, p := range perms {
		names[i] = string(p)
	}
	return &Denial{
		Status: http.StatusForbidden,
		Type:   TypePermission,
		Code:   CodePermissionDenied,
		Message: fmt.Sprintf("this key may not use the %s pool; it may use: %s",
			req.Platform, strings.Join(names, ", ")),
	}
}

// checkModel applies the allow-list, then the deny-list.
func checkModel(key store.Key, req Request) *Denial {
	if req.Model == "" {
		return nil
	}
	allow, deny := key.Policy.ModelsAllow, key.Policy.ModelsDeny
	var msg string
	switch {
	case len(allow) > 0 && !matchesAny(allow, req.Model):
		msg = fmt.Sprintf("this key may not use the model %q; it may use: %s", req.Model, strings.Join(allow, ", "))
	case matchesAny(deny, req.Model):
		msg = fmt.Sprintf("this key may not use the model %q", req.Model)
	default:
		return nil
	}
	return &Denial{Status: http.StatusForbidden, Type: TypePermission, Code: CodeModelNotAllowed, Message: msg}
}

func matchesAny(list []string, model string) bool {
	m := normalizeModel(model)
	for _, entry := range list {
		if modelMatches(normalizeModel(entry), m) {
			return true
		}
	}
	return false
}

// ModelAllowed reports whether the key's model lists let it use model, so
// that a model list shown to the key (GET /v1/models) leaves out what
// Check would refuse.
func ModelAllowed(key store.Key, model string) bool {
	return checkModel(key, Request{Model: model}) == nil
}

// modelMatches reports whether a normalized list entry covers a normalized
// model: vendor prefixes and case are already gone, a name covers its
// dated variants ("claude-opus-4" covers "claude-opus-4-20250514" but not
// "claude-opus-4-1"), and an entry ending in "*" covers every model that
// starts with the rest.
func modelMatches(entry, model string) bool {
	if entry == "" || model == "" {
		return false
	}
	if prefix, ok := strings.CutSuffix(entry, "*"); ok {
		return strings.HasPrefix(model, prefix)
	}
	rest, ok := strings.CutPrefix(model, entry)
	return ok && (rest == "" || datedSuffix(rest))
}

// normalizeModel lower-cases a model name and drops what names the vendor
// or the route rather than the model: path-like prefixes
// ("anthropic/claude-…", "models/gemini-…"), the original's "ccr," routing
// prefix, Bedrock's dotted vendor and region prefixes
// ("us.anthropic.claude-…"), and a trailing context tag ("[1m]").
func normalizeModel(m string) string {
	m = strings.ToLower(strings.TrimSpace(m))
	if i := strings.LastIndexAny(m, "/,"); i >= 0 {
		m = m[i+1:]
	}
	for {
		i := strings.IndexByte(m, '.')
		if i <= 0 || !letters(m[:i]) {
			break
		}
		m = m[i+1:]
	}
	if i := strings.IndexByte(m, '['); i > 0 && strings.HasSuffix(m, "]") {
		m = m[:i]
	}
	return m
}

// datedSuffix reports whether s, what follows a listed name in a model
// name, makes it a dated variant: "-20250514", "@20250514" (Vertex),
// "-2024-08-06" (OpenAI), each optionally followed by Bedrock's "-v1:0",
// or the "-latest" alias that stands for the newest dated variant.
func datedSuffix(s string) bool {
	if s == "" || (s[0] != '-' && s[0] != '@') {
		return false
	}
	s = s[1:]
	if s == "latest" {
		return true
	}
	switch {
	case len(s) >= 8 && digits(s[:8]):
		s = s[8:]
	case len(s) >= 10 && digits(s[:4]) && s[4] == '-' && digits(s[5:7]) && s[7] == '-' && digits(s[8:10]):
		s = s[10:]
	default:
		return false
	}
	if s == "" {
		return true
	}
	// Bedrock's model version: "-v1", "-v1:0".
	v, ok := strings.CutPrefix(s, "-v")
	if !ok {
		return false
	}
	major, minor, hasMinor := strings.Cut(v, ":")
	return digits(major) && (!hasMinor || digits(minor))
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func letters(s string) bool {
	for i := range len(s) {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	return s != ""
}

// isClaude reports whether a model counts toward the weekly cost limit,
// which covers the Claude family (as the original's widened weekly limit
// does).
func isClaude(model string) bool {
	return strings.Contains(normalizeModel(model), "claude")
}

// isOpus reports whether a model counts toward the daily Opus limit.
func isOpus(model string) bool {
	return strings.Contains(normalizeModel(model), "opus")
}
