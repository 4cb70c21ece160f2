package openai

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// jwt builds an unsigned token around payload, as the fake OAuth server and
// OpenAI's token endpoint shape it (the signature is not read).
func jwt(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k1","typ":"JWT"}`)) + "." + enc([]byte(payload)) + ".c2lnbmF0dXJl"
}

func TestParseIDToken(t *testing.T) {
	tests := []struct {
		name                 string
		token                string
		account, plan, email string
		err                  error
	}{
		{"codex login", jwt(`{"iss":"https://auth.openai.com","aud":["app_EMoamEEZ73f0CkXaXp7hrann"],"email":"ada@example.com","email_verified":true,` +
			`"https://api.openai.com/auth":{"chatgpt_account_id":"d1f0c2a4-0000-4000-8000-acc000000001","chatgpt_plan_type":"plus","chatgpt_user_id":"user-1",` +
			`"organizations":[{"id":"org-1","is_default":true}]},"exp":1800003600}`),
			"d1f0c2a4-0000-4000-8000-acc000000001", "plus", "ada@example.com", nil},
		{"email in the profile claim", jwt(`{"https://api.openai.com/profile":{"email":"bob@example.com"},"https://api.openai.com/auth":{"chatgpt_account_id":"a2","chatgpt_plan_type":"pro"}}`),
			"a2", "pro", "bob@example.com", nil},
		{"top-level email wins", jwt(`{"email":"top@example.com","https://api.openai.com/profile":{"email":"p@example.com"},"https://api.openai.com/auth":{"chatgpt_account_id":"a3"}}`),
			"a3", "", "top@example.com", nil},
		{"unsigned (alg none)", strings.TrimSuffix(jwt(`{"https://api.openai.com/auth":{"chatgpt_account_id":"a4"}}`), "c2lnbmF0dXJl"),
			"a4", "", "", nil},
		{"no account id", jwt(`{"email":"c@example.com","https://api.openai.com/auth":{"chatgpt_plan_type":"free"}}`), "", "free", "c@example.com", ErrNoAccountID},
		{"account id not a string", jwt(`{"https://api.openai.com/auth":{"chatgpt_account_id":12}}`), "", "", "", ErrNoAccountID},
		{"auth claim not an object", jwt(`{"https://api.openai.com/auth":"x"}`), "", "", "", ErrNoAccountID},
		{"dotted claim name is not a path", jwt(`{"https://api":{"openai":{"com/auth":{"chatgpt_account_id":"wrong"}}}}`), "", "", "", ErrNoAccountID},
		{"two parts", "a.b", "", "", "", ErrMalformedIDToken},
		{"four parts", "a.b.c.d", "", "", "", ErrMalformedIDToken},
		{"empty", "", "", "", "", ErrMalformedIDToken},
		{"payload not base64", "x.!!!.y", "", "", "", ErrMalformedIDToken},
		{"payload not json", "x." + base64.RawURLEncoding.EncodeToString([]byte("not json")) + ".y", "", "", "", ErrMalformedIDToken},
		{"payload an array", "x." + base64.RawURLEncoding.EncodeToString([]byte(`[1]`)) + ".y", "", "", "", ErrMalformedIDToken},
		{"payload cut", "x." + base64.RawURLEncoding.EncodeToString([]byte(`{"https://api.openai.com/auth":{"chatgpt_account_id":"a`)) + ".y", "", "", "", ErrMalformedIDToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			account, plan, email, err := ParseIDToken(tt.token)
			if account != tt.account || plan != tt.plan || email != tt.email || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("got %q %q %q %v; want %q %q %q %v", account, plan, email, err, tt.account, tt.plan, tt.email, tt.err)
			}
		})
	}
	// Padded base64url in the payload is tolerated; trailing garbage in
	// the JSON is not.
	padded := "x." + base64.URLEncoding.EncodeToString([]byte(`{"https://api.openai.com/auth":{"chatgpt_account_id":"p"}} `)) + ".y"
	if account, _, _, err := ParseIDToken(padded); err != nil || account != "p" {
		t.Fatalf("padded payload: %q %v", account, err)
	}
	garbage := "x." + base64.URLEncoding.EncodeToString([]byte(`{"https://api.openai.com/auth":{"chatgpt_account_id":"p"}}x`)) + ".y"
	if _, _, _, err := ParseIDToken(garbage); !errors.Is(err, ErrMalformedIDToken) {
		t.Fatalf("trailing garbage in the payload accepted: %v", err)
	}
}

func FuzzParseIDToken(f *testing.F) {
	f.Add(jwt(`{"email":"a@example.com","https://api.openai.com/auth":{"chatgpt_account_id":"a","chatgpt_plan_type":"plus"}}`))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		account, plan, email, err := ParseIDToken(token)
		switch {
		case err == nil && account == "":
			t.Fatal("success without an account id")
		case errors.Is(err, ErrMalformedIDToken) && (account != "" || plan != "" || email != ""):
			t.Fatal("values from a malformed token")
		case errors.Is(err, ErrNoAccountID) && account != "":
			t.Fatal("ErrNoAccountID with an account id")
		case err != nil && !errors.Is(err, ErrMalformedIDToken) && !errors.Is(err, ErrNoAccountID):
			t.Fatalf("unexpected error %v", err)
		}
	})
}
