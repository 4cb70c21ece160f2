package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

func testBox(t *testing.T) *secret.Box {
	t.Helper()
	b, err := secret.NewBox(strings.Repeat("refresher-test-key-", 3))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// refreshEnv is one fake OAuth server, one sqlite file and one Box.
type refreshEnv struct {
	fake *fakeupstream.OAuth
	path string
	st   *sqlite.Store
	box  *secret.Box
}

func newRefreshEnv(t *testing.T) *refreshEnv {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crs.db")
	return &refreshEnv{fake: fakeupstream.StartOAuth(t), path: path, st: openStore(t, path), box: testBox(t)}
}

// refresher builds a Refresher on st whose accounts all talk to the fake.
func (e *refreshEnv) refresher(st store.Store) *oauth.Refresher {
	return &oauth.Refresher{
		Store:  st,
		Box:    e.box,
		Client: func(store.Account) (oauth.Renewer, error) { return newClient(e.fake), nil },
	}
}

// credential onboards a fresh grant at the fake and returns it expiring at
// expires (zero: unknown expiry).
func (e *refreshEnv) credential(t *testing.T, expires time.Time) oauth.Credential {
	t.Helper()
	c := oauth.CredentialFromToken(onboard(t, e.fake, newClient(e.fake), oauth.KindOAuth))
	c.ExpiresAt = expires
	c.Plan = "max"
	return c
}

// addAccount stores a Claude account holding c; edit adjusts it first.
func (e *refreshEnv) addAccount(t *testing.T, id string, c oauth.Credential, edit func(*store.Account)) store.Account {
	t.Helper()
	sealed, err := c.Seal(e.box)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a := store.Account{ID: store.AccountID(id), Name: id, Platform: store.PlatformClaude, Type: store.TypeOAuth,
		Priority: 50, SealedSecret: sealed, CreatedAt: now, UpdatedAt: now}
	if edit != nil {
		edit(&a)
	}
	if err := e.st.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a
}

// stored reads the account and its credential back from the store.
func (e *refreshEnv) stored(t *testing.T, id store.AccountID) (store.Account, oauth.Credential) {
	t.Helper()
	a, err := e.st.GetAccount(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := oauth.OpenCredential(e.box, a.SealedSecret)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// checkRotated proves the stored refresh token is the live one: the fake
// accepts it exactly once more, and the replaced one is spent.
func (e *refreshEnv) checkRotated(t *testing.T, id store.AccountID, old oauth.Credential) {
	t.Helper()
	_, c := e.stored(t, id)
	if c.RefreshToken == old.RefreshToken || c.AccessToken == old.AccessToken {
		t.Fatal("stored credential was not rotated")
	}
	if c.Plan != old.Plan || c.AccountUUID != fakeupstream.OAuthAccountUUID {
		t.Fatalf("refresh lost account metadata: %v", c)
	}
	if !e.fake.AccessTokenValid(c.AccessToken) {
		t.Fatal("stored access token is not one the fake issued")
	}
	if _, err := newClient(e.fake).Refresh(testCtx(t), old.RefreshToken); !errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("old refresh token still works (err %v): a second refresh was possible", err)
	}
	if _, err := newClient(e.fake).Refresh(testCtx(t), c.RefreshToken); err != nil {
		t.Fatalf("stored refresh token does not work: %v", err)
	}
}

func TestRefresherConcurrentCallersShareOneRefresh(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)

	const n = 100
	tokens := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { tokens[i], errs[i] = r.AccessToken(testCtx(t), acct) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got another token than caller 0", i)
		}
	}
	if tokens[0] == old.AccessToken {
		t.Fatal("callers got the expired token")
	}
	if got := e.fake.RefreshCalls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
	_, c := e.stored(t, acct.ID)
	if c.AccessToken != tokens[0] {
		t.Fatal("the token handed out is not the stored one")
	}
	e.checkRotated(t, acct.ID, old)
}

func TestRefresherTwoInstancesRefreshOnce(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	// Two Stores on one file are two relay instances sharing a database.
	instances := []*oauth.Refresher{e.refresher(e.st), e.refresher(openStore(t, e.path))}

	const perInstance = 25
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, r := range instances {
		for range perInstance {
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
	if got := e.fake.RefreshCalls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
	if len(seen) != 1 {
		t.Fatalf("callers got %d distinct tokens, want 1", len(seen))
	}
	e.checkRotated(t, acct.ID, old)
}

func TestRefresherRefreshesOnlyWhenDue(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name          string
		expires       time.Time
		ahead         time.Duration
		noRefresh     bool // a setup token: nothing to refresh with
		wantCalls     int
		wantSameToken bool
	}{
		{name: "fresh", expires: now.Add(time.Hour), wantCalls: 0, wantSameToken: true},
		{name: "inside default ahead", expires: now.Add(4 * time.Minute), wantCalls: 1},
		{name: "outside a shorter ahead", expires: now.Add(4 * time.Minute), ahead: time.Minute, wantCalls: 0, wantSameToken: true},
		{name: "inside a longer ahead", expires: now.Add(50 * time.Minute), ahead: time.Hour, wantCalls: 1},
		{name: "expired", expires: now.Add(-time.Hour), wantCalls: 1},
		{name: "unknown expiry", wantCalls: 1},
		{name: "setup token due but valid", expires: now.Add(time.Minute), noRefresh: true, wantCalls: 0, wantSameToken: true},
		{name: "setup token without expiry", noRefresh: true, wantCalls: 0, wantSameToken: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newRefreshEnv(t)
			c := e.credential(t, tc.expires)
			if tc.noRefresh {
				c.RefreshToken = ""
			}
			acct := e.addAccount(t, "a1", c, nil)
			r := e.refresher(e.st)
			r.Ahead = tc.ahead
			tok, err := r.AccessToken(testCtx(t), acct)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.fake.RefreshCalls(); got != tc.wantCalls {
				t.Fatalf("refresh calls = %d, want %d", got, tc.wantCalls)
			}
			if (tok == c.AccessToken) != tc.wantSameToken {
				t.Fatalf("same token = %t, want %t", tok == c.AccessToken, tc.wantSameToken)
			}
		})
	}
}

func TestRefresherSetupTokenExpiredIsDead(t *testing.T) {
	e := newRefreshEnv(t)
	c := e.credential(t, time.Now().Add(-time.Minute))
	c.RefreshToken = ""
	acct := e.addAccount(t, "a1", c, func(a *store.Account) { a.Type = store.TypeSetupToken })
	_, err := e.refresher(e.st).AccessToken(testCtx(t), acct)
	if !errors.Is(err, oauth.ErrCredentialDead) {
		t.Fatalf("err = %v, want ErrCredentialDead", err)
	}
	noLeak(t, err, c.AccessToken)
	if a, _ := e.stored(t, acct.ID); a.CooldownKind != store.CooldownCredentialDead {
		t.Fatalf("cooldown = %q, want credential_dead", a.CooldownKind)
	}
	if e.fake.RefreshCalls() != 0 {
		t.Fatal("a token without refresh token was refreshed")
	}
}

func TestRefresherInvalidGrantKillsAccountOnce(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	e.fake.Revoke(old.RefreshToken)
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)

	_, err := r.AccessToken(testCtx(t), acct)
	if !errors.Is(err, oauth.ErrInvalidGrant) || !errors.Is(err, oauth.ErrCredentialDead) {
		t.Fatalf("err = %v, want ErrInvalidGrant and ErrCredentialDead", err)
	}
	noLeak(t, err, old.AccessToken, old.RefreshToken)
	a, _ := e.stored(t, acct.ID)
	if a.CooldownKind != store.CooldownCredentialDead || a.CooldownUntil == nil || !a.CooldownUntil.After(time.Now().Add(time.Hour)) {
		t.Fatalf("cooldown = %q until %v, want credential_dead for long", a.CooldownKind, a.CooldownUntil)
	}
	if !strings.Contains(a.CooldownReason, "refresh rejected") || !strings.Contains(a.CooldownReason, "invalid_grant") {
		t.Fatalf("reason = %q", a.CooldownReason)
	}
	noLeak(t, errors.New(a.CooldownReason), old.AccessToken, old.RefreshToken)

	// The caller's stale copy does not show the cooldown; the stored one
	// must stop a second call before it reaches the token endpoint, both in
	// this instance and in a fresh one.
	for _, r := range []*oauth.Refresher{r, e.refresher(openStore(t, e.path))} {
		for _, call := range []func(context.Context, store.Account) (string, error){r.AccessToken, r.ForceRefresh} {
			if _, err := call(testCtx(t), acct); !errors.Is(err, oauth.ErrCredentialDead) {
				t.Fatalf("second call: err = %v, want ErrCredentialDead", err)
			}
		}
	}
	if got := e.fake.RefreshCalls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
	n, err := r.RefreshDue(testCtx(t))
	if n != 0 || err != nil || e.fake.RefreshCalls() != 1 {
		t.Fatalf("sweep refreshed a dead account: n=%d err=%v", n, err)
	}
}

// failingSave is a store whose SetAccountSecret always fails, the fault hook
// for "the rotated token could not be saved".
type failingSave struct{ store.Store }

func (failingSave) SetAccountSecret(context.Context, store.AccountID, []byte) error {
	return errors.New("disk full")
}

func TestRefresherFailedSaveKillsAccount(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(failingSave{e.st})

	tok, err := r.AccessToken(testCtx(t), acct)
	if !errors.Is(err, oauth.ErrCredentialDead) || tok != "" {
		t.Fatalf("token %q, err %v: want no token and ErrCredentialDead", tok, err)
	}
	if !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err %v does not name the cause", err)
	}
	noLeak(t, err, old.AccessToken, old.RefreshToken)
	a, c := e.stored(t, acct.ID)
	if a.CooldownKind != store.CooldownCredentialDead || !strings.HasPrefix(a.CooldownReason, "rotated token could not be saved: ") {
		t.Fatalf("cooldown %q reason %q", a.CooldownKind, a.CooldownReason)
	}
	if c.RefreshToken != old.RefreshToken {
		t.Fatal("stored secret changed although the save failed")
	}
	if _, err := r.AccessToken(testCtx(t), acct); !errors.Is(err, oauth.ErrCredentialDead) {
		t.Fatalf("second call: %v", err)
	}
	if got := e.fake.RefreshCalls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
}

func TestRefresherConnectionErrorIsNotDead(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)
	r.Client = func(store.Account) (oauth.Renewer, error) {
		// Port 1 on loopback refuses connections: a dial error.
		return &oauth.Client{Endpoints: oauth.Endpoints{TokenURL: "http://127.0.0.1:1/v1/oauth/token"}, RetryWait: time.Millisecond}, nil
	}
	_, err := r.AccessToken(testCtx(t), acct)
	if err == nil || errors.Is(err, oauth.ErrCredentialDead) || errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("err = %v, want a plain connection error", err)
	}
	noLeak(t, err, old.AccessToken, old.RefreshToken)
	if a, _ := e.stored(t, acct.ID); a.CooldownKind != store.CooldownNone {
		t.Fatalf("cooldown %q after a connection error", a.CooldownKind)
	}
	// The lease was released: the next call (upstream back) refreshes.
	r.Client = e.refresher(e.st).Client
	if _, err := r.AccessToken(testCtx(t), acct); err != nil {
		t.Fatal(err)
	}
	e.checkRotated(t, acct.ID, old)
}

func TestRefresherServerErrorIsNotDead(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	e.fake.FailNext(http.StatusServiceUnavailable, "")
	_, err := e.refresher(e.st).AccessToken(testCtx(t), acct)
	if err == nil || errors.Is(err, oauth.ErrCredentialDead) {
		t.Fatalf("err = %v, want a plain upstream error", err)
	}
	if a, _ := e.stored(t, acct.ID); a.CooldownKind != store.CooldownNone {
		t.Fatalf("cooldown %q after a 503", a.CooldownKind)
	}
}

func TestRefresherForceRefresh(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(time.Hour))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)

	tok, err := r.ForceRefresh(testCtx(t), acct)
	if err != nil {
		t.Fatal(err)
	}
	if tok == old.AccessToken || e.fake.RefreshCalls() != 1 {
		t.Fatalf("force refresh: same token %t, calls %d", tok == old.AccessToken, e.fake.RefreshCalls())
	}
	// Another request that failed with the old token while that refresh
	// ran gets the new token without spending another refresh.
	again, err := r.ForceRefresh(testCtx(t), acct)
	if err != nil || again != tok || e.fake.RefreshCalls() != 1 {
		t.Fatalf("second force: err %v, same %t, calls %d", err, again == tok, e.fake.RefreshCalls())
	}
	// A request that failed with the new token forces one more.
	cur, _ := e.st.GetAccount(testCtx(t), acct.ID)
	third, err := r.ForceRefresh(testCtx(t), cur)
	if err != nil || third == tok || e.fake.RefreshCalls() != 2 {
		t.Fatalf("third force: err %v, same %t, calls %d", err, third == tok, e.fake.RefreshCalls())
	}
}

func TestRefresherForceRefreshWithoutRefreshToken(t *testing.T) {
	e := newRefreshEnv(t)
	c := e.credential(t, time.Now().Add(time.Hour))
	c.RefreshToken = ""
	acct := e.addAccount(t, "a1", c, func(a *store.Account) { a.Type = store.TypeSetupToken })
	_, err := e.refresher(e.st).ForceRefresh(testCtx(t), acct)
	if err == nil || errors.Is(err, oauth.ErrCredentialDead) {
		t.Fatalf("err = %v, want a plain error", err)
	}
	if a, _ := e.stored(t, acct.ID); a.CooldownKind != store.CooldownNone {
		t.Fatal("the refresher put a cooldown the caller should decide")
	}
}

// slowTransport delays every request, so a caller can give up mid-refresh.
type slowTransport struct{ delay time.Duration }

func (s slowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(s.delay)
	return http.DefaultTransport.RoundTrip(req)
}

func TestRefresherSavesEvenIfCallerGivesUp(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)
	r.Client = func(store.Account) (oauth.Renewer, error) {
		c := newClient(e.fake)
		c.HTTP = &http.Client{Transport: slowTransport{delay: 200 * time.Millisecond}}
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.AccessToken(ctx, acct); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the caller's deadline", err)
	}
	// The refresh went on without the caller and saved its result.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, c := e.stored(t, acct.ID); c.AccessToken != old.AccessToken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated token was never saved")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := r.AccessToken(testCtx(t), acct); err != nil {
		t.Fatal(err)
	}
	if got := e.fake.RefreshCalls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
	e.checkRotated(t, acct.ID, old)
}

func TestRefresherWaitsForOtherInstanceLease(t *testing.T) {
	e := newRefreshEnv(t)
	old := e.credential(t, time.Now().Add(-time.Minute))
	acct := e.addAccount(t, "a1", old, nil)
	r := e.refresher(e.st)
	r.PollInterval = 10 * time.Millisecond
	r.WaitLimit = 150 * time.Millisecond

	// Another instance holds the lease and never finishes.
	lease, ok, err := e.st.TryLock(testCtx(t), "oauth-refresh:a1", time.Minute)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	start := time.Now()
	if _, err := r.AccessToken(testCtx(t), acct); err == nil || !strings.Contains(err.Error(), "another instance") {
		t.Fatalf("err = %v, want a timeout waiting for the other instance", err)
	}
	if time.Since(start) > 2*time.Second || e.fake.RefreshCalls() != 0 {
		t.Fatalf("waited %s, %d calls", time.Since(start), e.fake.RefreshCalls())
	}

	// The other instance finishes its refresh while we wait: we take its
	// token from the store without calling.
	done := make(chan struct{})
	var tok string
	var waitErr error
	r.WaitLimit = 5 * time.Second
	go func() {
		defer close(done)
		tok, waitErr = r.AccessToken(testCtx(t), acct)
	}()
	time.Sleep(50 * time.Millisecond)
	next := old
	next.AccessToken, next.ExpiresAt = "other-instance-token", time.Now().Add(time.Hour)
	sealed, _ := next.Seal(e.box)
	if err := e.st.SetAccountSecret(testCtx(t), acct.ID, sealed); err != nil {
		t.Fatal(err)
	}
	<-done
	if waitErr != nil || tok != "other-instance-token" || e.fake.RefreshCalls() != 0 {
		t.Fatalf("waiter: err %v, token from store %t, calls %d", waitErr, tok == "other-instance-token", e.fake.RefreshCalls())
	}
	if err := e.st.Unlock(testCtx(t), "oauth-refresh:a1", lease); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshDueSweepsOnlyDueOAuthAccounts(t *testing.T) {
	e := newRefreshEnv(t)
	now := time.Now()
	past := now.Add(-time.Minute)
	due := e.credential(t, now.Add(2*time.Minute))
	e.addAccount(t, "due", due, nil)
	e.addAccount(t, "fresh", e.credential(t, now.Add(time.Hour)), nil)
	e.addAccount(t, "disabled", e.credential(t, past), func(a *store.Account) { a.Disabled = true })
	// Droid accounts hold no OAuth credential crs can refresh. (OpenAI
	// and Gemini OAuth accounts are swept too: see the platform tests.)
	e.addAccount(t, "droid", e.credential(t, past), func(a *store.Account) { a.Platform = store.PlatformDroid })
	e.addAccount(t, "apikey", e.credential(t, past), func(a *store.Account) { a.Type = store.TypeAPIKey })
	e.addAccount(t, "setup", e.credential(t, past), func(a *store.Account) { a.Type = store.TypeSetupToken })
	until := now.Add(time.Hour)
	e.addAccount(t, "dead", e.credential(t, past), func(a *store.Account) {
		a.CooldownKind, a.CooldownUntil, a.CooldownReason = store.CooldownCredentialDead, &until, "test"
	})
	due2 := e.credential(t, past)
	e.addAccount(t, "limited", due2, func(a *store.Account) {
		// A rate limit does not stop a refresh.
		a.CooldownKind, a.CooldownUntil = store.CooldownRateLimited, &until
	})

	r := e.refresher(e.st)
	n, err := r.RefreshDue(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || e.fake.RefreshCalls() != 2 {
		t.Fatalf("refreshed %d, calls %d, want 2 and 2", n, e.fake.RefreshCalls())
	}
	e.checkRotated(t, "due", due)
	e.checkRotated(t, "limited", due2)

	calls := e.fake.RefreshCalls()
	if n, err := r.RefreshDue(testCtx(t)); n != 0 || err != nil || e.fake.RefreshCalls() != calls {
		t.Fatalf("second sweep: n=%d err=%v calls=%d", n, err, e.fake.RefreshCalls()-calls)
	}
}

func TestRefreshDueReportsFailuresAndGoesOn(t *testing.T) {
	e := newRefreshEnv(t)
	past := time.Now().Add(-time.Minute)
	revoked := e.credential(t, past)
	e.fake.Revoke(revoked.RefreshToken)
	e.addAccount(t, "revoked", revoked, nil)
	ok := e.credential(t, past)
	e.addAccount(t, "ok", ok, nil)
	n, err := e.refresher(e.st).RefreshDue(testCtx(t))
	if n != 1 || !errors.Is(err, oauth.ErrInvalidGrant) {
		t.Fatalf("n=%d err=%v, want 1 and invalid_grant", n, err)
	}
	noLeak(t, err, revoked.AccessToken, revoked.RefreshToken, ok.AccessToken, ok.RefreshToken)
	e.checkRotated(t, "ok", ok)
}

func TestRefresherRejectsAPIKeyAccounts(t *testing.T) {
	e := newRefreshEnv(t)
	acct := e.addAccount(t, "k", e.credential(t, time.Now().Add(-time.Minute)), func(a *store.Account) { a.Type = store.TypeAPIKey })
	if _, err := e.refresher(e.st).AccessToken(testCtx(t), acct); err == nil {
		t.Fatal("an API-key account got an OAuth token")
	}
}

func TestCredentialSealOpen(t *testing.T) {
	box := testBox(t)
	c := oauth.Credential{AccessToken: "sk-ant-oat01-secret-access", RefreshToken: "sk-ant-ort01-secret-refresh",
		ExpiresAt: time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC), Scopes: []string{"user:inference"},
		AccountUUID: "acc", OrgUUID: "org", Email: "a@example.com", Plan: "pro"}
	sealed, err := c.Seal(box)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "secret-access") || strings.Contains(string(sealed), "secret-refresh") {
		t.Fatal("sealed credential holds a token in the clear")
	}
	got, err := oauth.OpenCredential(box, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Scopes) != fmt.Sprint(c.Scopes) || !got.ExpiresAt.Equal(c.ExpiresAt) ||
		got.AccessToken != c.AccessToken || got.RefreshToken != c.RefreshToken || got.Plan != c.Plan ||
		got.AccountUUID != c.AccountUUID || got.OrgUUID != c.OrgUUID || got.Email != c.Email {
		t.Fatalf("round trip changed the credential: %+v", got)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		if strings.Contains(s, "secret-") {
			t.Fatalf("formatted credential leaks a token: %s", s)
		}
	}
	other, _ := secret.NewBox(strings.Repeat("another-key-", 4))
	_, err = oauth.OpenCredential(other, sealed)
	if !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := oauth.OpenCredential(box, box.Seal([]byte(`{"refresh_token":"sk-ant-ort01-secret-refresh"`))); err == nil {
		t.Fatal("broken JSON opened")
	} else {
		noLeak(t, err, "secret-refresh")
	}
	if _, err := oauth.OpenCredential(box, nil); err == nil {
		t.Fatal("empty secret opened")
	}
	if _, err := (oauth.Credential{}).Seal(box); err == nil {
		t.Fatal("sealed a credential without access token")
	}
}

func TestCredentialFromToken(t *testing.T) {
	tok := oauth.Token{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Unix(100, 0), Scopes: []string{"s"},
		AccountUUID: "u", OrgUUID: "o", Email: "e"}
	c := oauth.CredentialFromToken(tok)
	want := oauth.Credential{AccessToken: "a", RefreshToken: "r", ExpiresAt: time.Unix(100, 0), Scopes: []string{"s"},
		AccountUUID: "u", OrgUUID: "o", Email: "e"}
	if fmt.Sprintf("%q %q %v %v %q %q %q %q", c.AccessToken, c.RefreshToken, c.ExpiresAt, c.Scopes, c.AccountUUID, c.OrgUUID, c.Email, c.Plan) !=
		fmt.Sprintf("%q %q %v %v %q %q %q %q", want.AccessToken, want.RefreshToken, want.ExpiresAt, want.Scopes, want.AccountUUID, want.OrgUUID, want.Email, want.Plan) {
		t.Fatalf("got %+v", c)
	}
}
