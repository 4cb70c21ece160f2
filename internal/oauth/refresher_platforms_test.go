package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// platformCase is one platform's token service, seen the way the Refresher
// tests need it.
type platformCase struct {
	platform store.Platform
	// rotates says whether a refresh replaces the refresh token (Claude,
	// OpenAI) or keeps it valid (Google).
	rotates      bool
	renewer      func() oauth.Renewer
	endpoints    func(*oauth.EndpointSet)
	grant        func(t *testing.T) oauth.Credential
	refreshCalls func() int
	revoke       func(refreshToken string)
	valid        func(accessToken string) bool
}

// platformCases starts a fresh fake per platform: the fakeupstream OAuth
// servers, written apart from this package, so the tests check the clients
// against someone else's reading of each service.
func platformCases(t *testing.T) []platformCase {
	t.Helper()
	claude := fakeupstream.StartOAuth(t)
	openai := fakeupstream.StartOpenAIOAuth(t)
	google := fakeupstream.StartGoogleOAuth(t)
	openaiEndpoints := oauth.OpenAIEndpoints{AuthorizeURL: openai.AuthorizeURL(), TokenURL: openai.TokenURL()}
	googleEndpoints := oauth.GoogleEndpoints{AuthorizeURL: google.AuthorizeURL(), TokenURL: google.TokenURL()}
	openaiClient := func() *oauth.OpenAIClient {
		return &oauth.OpenAIClient{Endpoints: openaiEndpoints, HTTP: &http.Client{}, RetryWait: time.Millisecond}
	}
	googleClient := func() *oauth.GoogleClient {
		return &oauth.GoogleClient{Endpoints: googleEndpoints, HTTP: &http.Client{}, RetryWait: time.Millisecond}
	}
	return []platformCase{
		{
			platform: store.PlatformClaude, rotates: true,
			renewer:   func() oauth.Renewer { return newClient(claude) },
			endpoints: func(s *oauth.EndpointSet) { s.Claude = fakeEndpoints(claude) },
			grant: func(t *testing.T) oauth.Credential {
				c := oauth.CredentialFromToken(onboard(t, claude, newClient(claude), oauth.KindOAuth))
				c.Plan = oauth.PlanMax
				return c
			},
			refreshCalls: claude.RefreshCalls, revoke: claude.Revoke, valid: claude.AccessTokenValid,
		},
		{
			platform: store.PlatformOpenAI, rotates: true,
			renewer:   func() oauth.Renewer { return openaiClient() },
			endpoints: func(s *oauth.EndpointSet) { s.OpenAI = openaiEndpoints },
			grant: func(t *testing.T) oauth.Credential {
				c := oauth.CredentialFromToken(browserOnboard(t, store.PlatformOpenAI, openaiEndpoints.AuthURL, openaiClient().Exchange))
				if c.ChatGPTAccountID != fakeupstream.OpenAIAccountID || c.Email != fakeupstream.OpenAIEmail || c.Plan == "" {
					t.Fatalf("identity from the fake's id_token: %q %q %q", c.ChatGPTAccountID, c.Email, c.Plan)
				}
				return c
			},
			refreshCalls: openai.RefreshCalls, revoke: openai.Revoke, valid: openai.AccessTokenValid,
		},
		{
			platform: store.PlatformGemini, rotates: false,
			renewer:   func() oauth.Renewer { return googleClient() },
			endpoints: func(s *oauth.EndpointSet) { s.Google = googleEndpoints },
			grant: func(t *testing.T) oauth.Credential {
				c := oauth.CredentialFromToken(browserOnboard(t, store.PlatformGemini, googleEndpoints.AuthURL, googleClient().Exchange))
				if c.Email != fakeupstream.GoogleOAuthEmail {
					t.Fatalf("email from the fake's id_token: %q", c.Email)
				}
				c.ProjectID, c.Plan = fakeupstream.DefaultGeminiProject, oauth.TierFree
				return c
			},
			refreshCalls: google.RefreshCalls, revoke: google.Revoke, valid: google.AccessTokenValid,
		},
	}
}

// browserOnboard does what an admin does: open the authorize URL (the fake
// approves at once and redirects), paste the callback URL, exchange the
// code.
func browserOnboard(t *testing.T, p store.Platform, authURL func(oauth.Pending) string,
	exchange func(context.Context, oauth.Pending, string) (oauth.Token, error)) oauth.Token {
	t.Helper()
	pend, err := oauth.NewPending(oauth.KindOAuth, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(authURL(pend))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%s authorize: status %d (the fake refused the authorize URL)", p, resp.StatusCode)
	}
	code, err := oauth.ParseCodeFor(p, resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := exchange(testCtx(t), pend, code)
	if err != nil {
		t.Fatalf("%s exchange: %v", p, err)
	}
	return tok
}

// platformStore is one sqlite file and one Box.
type platformStore struct {
	path string
	st   *sqlite.Store
	box  *secret.Box
}

func newPlatformStore(t *testing.T) *platformStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crs.db")
	return &platformStore{path: path, st: openStore(t, path), box: testBox(t)}
}

func (s *platformStore) add(t *testing.T, id string, p store.Platform, c oauth.Credential) store.Account {
	t.Helper()
	sealed, err := c.Seal(s.box)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := store.Account{ID: store.AccountID(id), Name: id, Platform: p, Type: store.TypeOAuth, Priority: 50,
		SealedSecret: sealed, CreatedAt: now, UpdatedAt: now}
	if err := s.st.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a
}

func (s *platformStore) stored(t *testing.T, id store.AccountID) (store.Account, oauth.Credential) {
	t.Helper()
	a, err := s.st.GetAccount(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := oauth.OpenCredential(s.box, a.SealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

func (s *platformStore) refresher(st store.Store, pc platformCase) *oauth.Refresher {
	return &oauth.Refresher{Store: st, Box: s.box, Client: func(store.Account) (oauth.Renewer, error) { return pc.renewer(), nil }}
}

// checkRenewed proves the stored credential is the live one after one
// refresh from old: a new working access token, the identity kept, and a
// refresh token that is the next one to use (rotated: the old one is spent;
// not rotated: the old one, still working).
func checkRenewed(t *testing.T, pc platformCase, c, old oauth.Credential) {
	t.Helper()
	if c.AccessToken == old.AccessToken || !pc.valid(c.AccessToken) {
		t.Fatal("stored access token is not a new one the fake issued")
	}
	if c.Email != old.Email || c.Plan != old.Plan || c.ChatGPTAccountID != old.ChatGPTAccountID ||
		c.ProjectID != old.ProjectID || c.AccountUUID != old.AccountUUID || c.OrgUUID != old.OrgUUID {
		t.Fatalf("refresh changed the identity: %+v → %+v", old, c)
	}
	if pc.rotates {
		if c.RefreshToken == old.RefreshToken {
			t.Fatal("a rotating platform's refresh token was not replaced")
		}
		if _, err := pc.renewer().Refresh(testCtx(t), old.RefreshToken); !errors.Is(err, oauth.ErrInvalidGrant) {
			t.Fatalf("the replaced refresh token still works (err %v): a second refresh was possible", err)
		}
	} else if c.RefreshToken != old.RefreshToken {
		t.Fatal("a non-rotating platform's refresh token changed")
	}
	if _, err := pc.renewer().Refresh(testCtx(t), c.RefreshToken); err != nil {
		t.Fatalf("the stored refresh token does not work: %v", err)
	}
}

func TestRefresherEveryPlatformSharesOneRefresh(t *testing.T) {
	for _, pc := range platformCases(t) {
		t.Run(string(pc.platform), func(t *testing.T) {
			s := newPlatformStore(t)
			old := pc.grant(t)
			old.ExpiresAt = time.Now().Add(-time.Minute)
			acct := s.add(t, "a1", pc.platform, old)
			// Two instances on one database, many callers each.
			instances := []*oauth.Refresher{s.refresher(s.st, pc), s.refresher(openStore(t, s.path), pc)}
			calls := pc.refreshCalls()
			var mu sync.Mutex
			seen := map[string]int{}
			var wg sync.WaitGroup
			for _, r := range instances {
				for range 20 {
					wg.Go(func() {
						tok, err := r.AccessToken(testCtx(t), acct)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						seen[tok]++
						mu.Unlock()
					})
				}
			}
			wg.Wait()
			if got := pc.refreshCalls() - calls; got != 1 {
				t.Fatalf("refresh calls = %d, want 1", got)
			}
			_, c := s.stored(t, acct.ID)
			if len(seen) != 1 || seen[c.AccessToken] != 40 {
				t.Fatalf("callers got %d distinct tokens, want the stored one only", len(seen))
			}
			checkRenewed(t, pc, c, old)
		})
	}
}

func TestRefresherEveryPlatformInvalidGrantKills(t *testing.T) {
	for _, pc := range platformCases(t) {
		t.Run(string(pc.platform), func(t *testing.T) {
			s := newPlatformStore(t)
			old := pc.grant(t)
			old.ExpiresAt = time.Now().Add(-time.Minute)
			pc.revoke(old.RefreshToken)
			acct := s.add(t, "a1", pc.platform, old)
			r := s.refresher(s.st, pc)
			calls := pc.refreshCalls()
			_, err := r.AccessToken(testCtx(t), acct)
			if !errors.Is(err, oauth.ErrInvalidGrant) || !errors.Is(err, oauth.ErrCredentialDead) {
				t.Fatalf("err = %v, want ErrInvalidGrant and ErrCredentialDead", err)
			}
			noLeak(t, err, old.AccessToken, old.RefreshToken)
			if a, _ := s.stored(t, acct.ID); a.CooldownKind != store.CooldownCredentialDead {
				t.Fatalf("cooldown %q", a.CooldownKind)
			}
			if _, err := r.ForceRefresh(testCtx(t), acct); !errors.Is(err, oauth.ErrCredentialDead) {
				t.Fatalf("second call: %v", err)
			}
			if got := pc.refreshCalls() - calls; got != 1 {
				t.Fatalf("refresh calls = %d, want 1", got)
			}
		})
	}
}

func TestRefresherEveryPlatformConnectionErrorIsNotDead(t *testing.T) {
	for _, pc := range platformCases(t) {
		t.Run(string(pc.platform), func(t *testing.T) {
			s := newPlatformStore(t)
			old := pc.grant(t)
			old.ExpiresAt = time.Now().Add(-time.Minute)
			acct := s.add(t, "a1", pc.platform, old)
			// Port 1 on loopback refuses connections: every token URL dials
			// and fails.
			refused := oauth.EndpointSet{
				Claude: oauth.Endpoints{TokenURL: "http://127.0.0.1:1/token"},
				OpenAI: oauth.OpenAIEndpoints{TokenURL: "http://127.0.0.1:1/token"},
				Google: oauth.GoogleEndpoints{TokenURL: "http://127.0.0.1:1/token"},
			}
			r := s.refresher(s.st, pc)
			r.Client = func(a store.Account) (oauth.Renewer, error) { return refused.Renewer(a.Platform, nil) }
			_, err := r.AccessToken(testCtx(t), acct)
			if err == nil || errors.Is(err, oauth.ErrCredentialDead) || errors.Is(err, oauth.ErrInvalidGrant) {
				t.Fatalf("err = %v, want a plain connection error", err)
			}
			noLeak(t, err, old.AccessToken, old.RefreshToken)
			if a, _ := s.stored(t, acct.ID); a.CooldownKind != store.CooldownNone {
				t.Fatalf("cooldown %q after a connection error", a.CooldownKind)
			}
			// The upstream is back: the next call refreshes.
			r.Client = s.refresher(s.st, pc).Client
			if _, err := r.AccessToken(testCtx(t), acct); err != nil {
				t.Fatal(err)
			}
			_, c := s.stored(t, acct.ID)
			checkRenewed(t, pc, c, old)
		})
	}
}

// Google keeps its refresh token; refreshing with the same one again and
// again (and from another instance) is the normal case, never reuse.
func TestRefresherGoogleSameRefreshTokenIsNotReuse(t *testing.T) {
	var pc platformCase
	for _, c := range platformCases(t) {
		if c.platform == store.PlatformGemini {
			pc = c
		}
	}
	s := newPlatformStore(t)
	old := pc.grant(t)
	acct := s.add(t, "g1", store.PlatformGemini, old)
	instances := []*oauth.Refresher{s.refresher(s.st, pc), s.refresher(openStore(t, s.path), pc)}
	prev := old.AccessToken
	for i := range 4 {
		cur, _ := s.stored(t, acct.ID)
		tok, err := instances[i%2].ForceRefresh(testCtx(t), cur)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		a, c := s.stored(t, acct.ID)
		if tok == prev || c.AccessToken != tok || c.RefreshToken != old.RefreshToken || a.CooldownKind != store.CooldownNone {
			t.Fatalf("refresh %d: new token %t, stored %t, refresh token kept %t, cooldown %q",
				i, tok != prev, c.AccessToken == tok, c.RefreshToken == old.RefreshToken, a.CooldownKind)
		}
		if c.ProjectID != fakeupstream.DefaultGeminiProject || c.Plan != oauth.TierFree || c.Email != fakeupstream.GoogleOAuthEmail {
			t.Fatalf("refresh %d lost the project or tier: %v %q", i, c, c.ProjectID)
		}
		prev = tok
	}
	if got := pc.refreshCalls(); got != 4 {
		t.Fatalf("refresh calls %d, want 4", got)
	}
}

// A ChatGPT plan change reaches the stored credential at the next refresh;
// a refresh answer without id_token keeps what was known.
func TestRefresherOpenAIIdentity(t *testing.T) {
	f := startFakeOpenAIOAuth(t)
	pc := platformCase{renewer: func() oauth.Renewer { return f.client() }}
	s := newPlatformStore(t)
	old := oauth.CredentialFromToken(onboardOpenAI(t, f))
	acct := s.add(t, "o1", store.PlatformOpenAI, old)
	r := s.refresher(s.st, pc)

	f.set(func(f *fakeOpenAIOAuth) { f.plan = "plus" })
	if _, err := r.ForceRefresh(testCtx(t), acct); err != nil {
		t.Fatal(err)
	}
	cur, c := s.stored(t, acct.ID)
	if c.Plan != "plus" || c.ChatGPTAccountID != fakeChatGPTAccount {
		t.Fatalf("after refresh: plan %q account %q", c.Plan, c.ChatGPTAccountID)
	}

	f.set(func(f *fakeOpenAIOAuth) { f.omitIDToken = true })
	if _, err := r.ForceRefresh(testCtx(t), cur); err != nil {
		t.Fatal(err)
	}
	if _, c2 := s.stored(t, acct.ID); c2.Plan != "plus" || c2.ChatGPTAccountID != fakeChatGPTAccount ||
		c2.Email != fakeChatGPTEmail || c2.AccessToken == c.AccessToken {
		t.Fatalf("a thin refresh lost the identity: %v %q", c2, c2.ChatGPTAccountID)
	}
}

func TestRefreshDueSweepsEveryPlatform(t *testing.T) {
	cases := platformCases(t)
	s := newPlatformStore(t)
	eps := oauth.DefaultEndpointSet()
	past := time.Now().Add(-time.Minute)
	olds := map[store.AccountID]oauth.Credential{}
	for _, pc := range cases {
		pc.endpoints(&eps)
		c := pc.grant(t)
		c.ExpiresAt = past
		id := "due-" + string(pc.platform)
		s.add(t, id, pc.platform, c)
		olds[store.AccountID(id)] = c
	}
	// A platform without OAuth is left alone.
	droid := cases[0].grant(t)
	droid.ExpiresAt = past
	s.add(t, "droid", store.PlatformDroid, droid)

	r := &oauth.Refresher{Store: s.st, Box: s.box, Client: func(a store.Account) (oauth.Renewer, error) {
		return eps.Renewer(a.Platform, &http.Client{})
	}}
	n, err := r.RefreshDue(testCtx(t))
	if err != nil || n != 3 {
		t.Fatalf("refreshed %d, err %v; want 3", n, err)
	}
	for _, pc := range cases {
		if got := pc.refreshCalls(); got != 1 {
			t.Errorf("%s: refresh calls %d, want 1", pc.platform, got)
		}
		id := store.AccountID("due-" + string(pc.platform))
		_, c := s.stored(t, id)
		checkRenewed(t, pc, c, olds[id])
	}
	if _, c := s.stored(t, "droid"); c.AccessToken != droid.AccessToken {
		t.Error("the droid account was refreshed")
	}
}

// The whole Gemini onboarding against the fake Google OAuth and Code
// Assist: exchange, then project discovery for a user not yet onboarded
// (onboardUser, one poll of the operation), then a plain load.
func TestGoogleOnboardingDiscoversProject(t *testing.T) {
	google := fakeupstream.StartGoogleOAuth(t)
	gemini := fakeupstream.StartGemini(t, fakeupstream.GeminiOptions{OAuth: google, NotOnboarded: true})
	c := &oauth.GoogleClient{
		Endpoints:   oauth.GoogleEndpoints{AuthorizeURL: google.AuthorizeURL(), TokenURL: google.TokenURL(), CodeAssistURL: gemini.URL()},
		OnboardPoll: time.Millisecond,
	}
	tok := browserOnboard(t, store.PlatformGemini, c.Endpoints.AuthURL, c.Exchange)
	if _, _, err := c.LoadCodeAssist(testCtx(t), "ya29.not-issued"); !errors.Is(err, oauth.ErrUnauthorized) {
		t.Fatalf("unknown token: %v", err)
	}
	project, tier, err := c.DiscoverProject(testCtx(t), tok.AccessToken)
	if err != nil || project != fakeupstream.DefaultGeminiProject || tier != oauth.TierFree {
		t.Fatalf("discover: %q %q %v", project, tier, err)
	}
	if gemini.CodeAssistProject() != project {
		t.Fatalf("the fake's user is onboarded with %q", gemini.CodeAssistProject())
	}
	project, tier, err = c.LoadCodeAssist(testCtx(t), tok.AccessToken)
	if err != nil || project != fakeupstream.DefaultGeminiProject || tier != oauth.TierFree {
		t.Fatalf("load after onboarding: %q %q %v", project, tier, err)
	}
}

func TestEndpointSetRenewer(t *testing.T) {
	eps := oauth.DefaultEndpointSet()
	hc := &http.Client{}
	for _, tc := range []struct {
		platform store.Platform
		want     string
	}{
		{store.PlatformClaude, "*oauth.Client"},
		{store.PlatformOpenAI, "*oauth.OpenAIClient"},
		{store.PlatformGemini, "*oauth.GoogleClient"},
	} {
		r, err := eps.Renewer(tc.platform, hc)
		if err != nil || fmt.Sprintf("%T", r) != tc.want {
			t.Errorf("%s: %T, %v", tc.platform, r, err)
		}
	}
	if c, _ := eps.Renewer(store.PlatformOpenAI, hc); c.(*oauth.OpenAIClient).Endpoints != eps.OpenAI || c.(*oauth.OpenAIClient).HTTP != hc {
		t.Error("the OpenAI client does not use the set's endpoints and the given HTTP client")
	}
	if c, _ := eps.Renewer(store.PlatformGemini, hc); c.(*oauth.GoogleClient).Endpoints != eps.Google {
		t.Error("the Google client does not use the set's endpoints")
	}
	if r, err := eps.Renewer(store.PlatformDroid, hc); err == nil || r != nil {
		t.Errorf("droid: %v, %v", r, err)
	}
}

func TestCredentialPlatformFields(t *testing.T) {
	box := testBox(t)
	c := oauth.Credential{AccessToken: "at", RefreshToken: "rt", ExpiresAt: time.Unix(100, 0).UTC(),
		Plan: "pro", ChatGPTAccountID: "ws-1", ProjectID: "proj-1", Email: "e@example.com"}
	sealed, err := c.Seal(box)
	if err != nil {
		t.Fatal(err)
	}
	got, err := oauth.OpenCredential(box, sealed)
	if err != nil || got.ChatGPTAccountID != "ws-1" || got.ProjectID != "proj-1" || got.Plan != "pro" {
		t.Fatalf("round trip: %+v %q %q, %v", got, got.ChatGPTAccountID, got.ProjectID, err)
	}
	raw, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	if m["chatgpt_account_id"] != "ws-1" || m["project_id"] != "proj-1" {
		t.Errorf("JSON names: %s", raw)
	}
	// A Claude credential's stored JSON is what it was before these fields.
	raw, _ = json.Marshal(oauth.Credential{AccessToken: "at", AccountUUID: "u", Plan: "max"})
	if string(raw) != `{"access_token":"at","expires_at":"0001-01-01T00:00:00Z","account_uuid":"u","plan":"max"}` {
		t.Errorf("Claude JSON changed: %s", raw)
	}
}
