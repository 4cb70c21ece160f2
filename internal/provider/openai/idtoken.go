package openai

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/tidwall/gjson"
)

// authClaim is the private claim in which OpenAI's id token describes the
// ChatGPT account; profileClaim carries the email in some tokens.
const (
	authClaim    = "https://api.openai.com/auth"
	profileClaim = "https://api.openai.com/profile"
)

// Errors of ParseIDToken. Both mean the account cannot be onboarded from
// this token: without a ChatGPT account id the Codex backend cannot be
// told which account a request acts for.
var (
	ErrMalformedIDToken = errors.New("openai: id token is not a JWT with a JSON payload")
	ErrNoAccountID      = errors.New("openai: id token names no chatgpt_account_id")
)

// ParseIDToken reads the ChatGPT account id, plan type ("plus", "pro",
// "team"…) and email from the id token that OpenAI's token endpoint
// returns with a Codex OAuth grant: the account id and plan from the
// claim "https://api.openai.com/auth" (chatgpt_account_id,
// chatgpt_plan_type), the email from "email" (or the profile claim).
//
// The signature is not checked. The token comes straight from the token
// endpoint over TLS, in answer to a code or refresh token only this relay
// holds, so it is as trustworthy as the access token beside it; checking
// it would mean fetching and caching OpenAI's signing keys for no gain.
// Never use this on a token that arrived any other way.
//
// err is ErrMalformedIDToken when the token is not three dot-separated
// parts with a base64url JSON object in the middle, and ErrNoAccountID
// when the payload has no account id; plan and email are still returned
// then.
func ParseIDToken(idToken string) (accountID, plan, email string, err error) {
	parts := strings.Split(strings.TrimSpace(idToken), ".")
	if len(parts) != 3 {
		return "", "", "", ErrMalformedIDToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || !gjson.ValidBytes(payload) {
		return "", "", "", ErrMalformedIDToken
	}
	root := gjson.ParseBytes(payload)
	if !root.IsObject() {
		return "", "", "", ErrMalformedIDToken
	}
	var profileEmail string
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case authClaim:
			accountID = str(v.Get("chatgpt_account_id"))
			plan = str(v.Get("chatgpt_plan_type"))
		case profileClaim:
			profileEmail = str(v.Get("email"))
		case "email":
			email = str(v)
		}
		return true
	})
	if email == "" {
		email = profileEmail
	}
	if accountID == "" {
		return "", plan, email, ErrNoAccountID
	}
	return accountID, plan, email, nil
}

// str is r's value when it is a JSON string, else "".
func str(r gjson.Result) string {
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}
