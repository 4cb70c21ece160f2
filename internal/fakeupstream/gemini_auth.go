package fakeupstream

import (
	"net/http"
	"strings"
)

// checkAPIKey enforces the native API's credential: x-goog-api-key, or the
// key query parameter. The real API refuses a missing key with 403 and a
// wrong one with 400 API_KEY_INVALID (not 401), which a relay must still
// read as a dead credential.
func (g *Gemini) checkAPIKey(rep *geminiReply, r *http.Request) bool {
	key := r.Header.Get("X-Goog-Api-Key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	if key == "" {
		rep.error(http.StatusForbidden, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", googleErrorDetails{})
		return false
	}
	if len(g.opts.APIKeys) == 0 {
		return true
	}
	for _, k := range g.opts.APIKeys {
		if k == key {
			return true
		}
	}
	rep.error(http.StatusBadRequest, "API key not valid. Please pass a valid API key.", googleErrorDetails{
		reason: "API_KEY_INVALID", domain: "googleapis.com",
		metadata: map[string]string{"service": "generativelanguage.googleapis.com"},
	})
	return false
}

// checkBearer enforces the Code Assist credential: a Google OAuth access
// token with the cloud-platform scope.
func (g *Gemini) checkBearer(rep *geminiReply, r *http.Request) bool {
	tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok = strings.TrimSpace(tok)
	if !found || tok == "" {
		rep.setHeader("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
		rep.error(http.StatusUnauthorized, "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", googleErrorDetails{
			reason: "CREDENTIALS_MISSING", domain: "googleapis.com",
		})
		return false
	}
	if g.opts.OAuth == nil {
		return true
	}
	scope, state := g.opts.OAuth.accessState(tok)
	if state != googleTokenLive {
		d := googleErrorDetails{}
		if state == googleTokenExpired {
			d = googleErrorDetails{reason: "ACCESS_TOKEN_EXPIRED", domain: "googleapis.com"}
		}
		rep.setHeader("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		rep.error(http.StatusUnauthorized, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", d)
		return false
	}
	if !hasGoogleScope(scope, googleCloudPlatformScope) {
		rep.setHeader("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="`+googleCloudPlatformScope+`"`)
		rep.error(http.StatusForbidden, "Request had insufficient authentication scopes.", googleErrorDetails{
			reason: "ACCESS_TOKEN_SCOPE_INSUFFICIENT", domain: "googleapis.com",
		})
		return false
	}
	return true
}
