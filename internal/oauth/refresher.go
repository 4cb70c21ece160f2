package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Refresher timing. The lease outlives the refresh call it guards (which is
// cut at two thirds of it), so no other instance can take the lease and
// spend the same single-use refresh token while a call is still in flight.
const (
	// DefaultRefreshAhead is how long before expiry a token is refreshed.
	DefaultRefreshAhead = 5 * time.Minute
	// RefreshLeaseTTL is the lifetime of the store lease held while one
	// instance refreshes an account.
	RefreshLeaseTTL = 30 * time.Second
	// DefaultRefreshPoll is how often an instance waiting on another
	// instance's refresh re-reads the store.
	DefaultRefreshPoll = 100 * time.Millisecond
	// DefaultRefreshWait bounds that waiting.
	DefaultRefreshWait = 10 * time.Second
	// DeadCooldown is how long an account whose grant was refused stays
	// credential_dead. Re-onboarding clears it at once; after it runs out
	// one more refresh is tried, which costs one request a day on a truly
	// dead account and revives one that a misreported refusal condemned.
	DeadCooldown = 24 * time.Hour
)

// refreshCallShare is the part of the lease the token call may use; the rest
// is left for saving the result and releasing the lease.
const refreshCallShare = RefreshLeaseTTL * 2 / 3

// flightLimit bounds one whole refresh (waiting, calling, saving) that runs
// detached from the caller's context.
const flightLimit = 2 * time.Minute

// leasePrefix names the per-account refresh lease in the store.
const leasePrefix = "oauth-refresh:"

// ErrCredentialDead means the account's OAuth credential cannot be used or
// renewed: the grant was refused, or a rotated token could not be saved.
// The account has been put in a credential_dead cooldown; only onboarding it
// again helps. Check with errors.Is.
var ErrCredentialDead = errors.New("oauth: account credential is dead; onboard the account again")

// Refresher hands out valid access tokens for the OAuth accounts of every
// platform. Claude and OpenAI refresh tokens are single-use, so two
// refreshes of one account racing each other lose the account: the loser
// presents a spent token and gets invalid_grant. The Refresher therefore
// refreshes each account at most once at a time across all instances:
// callers in one process share one refresh (and its result), and instances
// serialise on a store lease, under which they reload the account, re-check
// it, refresh, and save the rotated token before anyone uses it. Google does
// not rotate its refresh tokens; the same discipline costs it nothing, and
// the Refresher never compares refresh tokens, so an unchanged one is simply
// saved again.
//
// Set the exported fields before first use; do not copy a Refresher after.
type Refresher struct {
	// Store holds the accounts and the refresh leases.
	Store store.Store
	// Box opens and seals the accounts' credentials.
	Box *secret.Box
	// Client returns the refresh client for an account's platform, built
	// with the account's own proxy, so the refresh leaves from the address
	// its API traffic uses. EndpointSet.Renewer builds the right one.
	Client func(store.Account) (Renewer, error)
	// Ahead is how long before expiry a token counts as due. Zero means
	// DefaultRefreshAhead.
	Ahead time.Duration
	// Now is the clock for expiry and cooldowns. Nil means time.Now.
	Now func() time.Time
	// Logger receives refresh outcomes (never tokens). Nil discards them.
	Logger *slog.Logger
	// PollInterval is how often a wait on another instance's refresh
	// re-reads the store. Zero means DefaultRefreshPoll.
	PollInterval time.Duration
	// WaitLimit bounds that wait. Zero means DefaultRefreshWait.
	WaitLimit time.Duration
	// Alerts hears about accounts whose credential this Refresher declared
	// dead (a notify.Dispatcher). Nil tells no one.
	Alerts Alerts

	mu      sync.Mutex
	flights map[string]*flight
}

// Alerts receives the accounts a Refresher puts in a credential_dead
// cooldown; the call must return at once.
type Alerts interface {
	AccountResting(acct store.Account, family string, kind store.CooldownKind, until time.Time, reason string)
}

// flight is one refresh run in this process; every caller that needs the
// same account refreshed while it runs waits for it and shares its result.
type flight struct {
	done      chan struct{}
	token     string
	refreshed bool
	err       error
}

func (r *Refresher) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Refresher) ahead() time.Duration {
	if r.Ahead > 0 {
		return r.Ahead
	}
	return DefaultRefreshAhead
}

func (r *Refresher) poll() time.Duration {
	if r.PollInterval > 0 {
		return r.PollInterval
	}
	return DefaultRefreshPoll
}

func (r *Refresher) waitLimit() time.Duration {
	if r.WaitLimit > 0 {
		return r.WaitLimit
	}
	return DefaultRefreshWait
}

func (r *Refresher) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// due reports whether c should be refreshed at now. An unknown expiry (an
// import without expiresAt) is due: refreshing is the only way to learn it.
func (r *Refresher) due(c Credential, now time.Time) bool {
	return c.ExpiresAt.IsZero() || !now.Before(c.ExpiresAt.Add(-r.ahead()))
}

// unexpired reports whether c's access token still works at now.
func unexpired(c Credential, now time.Time) bool {
	return !c.ExpiresAt.IsZero() && now.Before(c.ExpiresAt)
}

// satisfied reports whether a credential read from the store ends the need
// for a refresh that started from the access token base: another refresh
// already replaced base with a working token, or (unless forced) the stored
// token is simply not due.
func (r *Refresher) satisfied(c Credential, force bool, base string, now time.Time) bool {
	if c.AccessToken != base && unexpired(c, now) {
		return true
	}
	return !force && !r.due(c, now)
}

// deadError returns an ErrCredentialDead error while a is in a
// credential_dead cooldown, so a dead account fails fast instead of calling
// the token endpoint again.
func deadError(a store.Account, now time.Time) error {
	if a.CooldownKind == store.CooldownCredentialDead && a.CooldownUntil != nil && now.Before(*a.CooldownUntil) {
		return fmt.Errorf("oauth: account %s: %w (%s)", a.ID, ErrCredentialDead, a.CooldownReason)
	}
	return nil
}

func checkType(a store.Account) error {
	if a.Type != store.TypeOAuth && a.Type != store.TypeSetupToken {
		return fmt.Errorf("oauth: account %s is a %s account, not an OAuth one", a.ID, a.Type)
	}
	return nil
}

// AccessToken returns a usable access token for acct, refreshing it first
// when it is due (now >= ExpiresAt-Ahead). acct may be a cached copy: a
// refresh always reloads the account under the lease. A token without a
// refresh token (setup tokens) is returned as long as it has not expired.
func (r *Refresher) AccessToken(ctx context.Context, acct store.Account) (string, error) {
	c, err := r.Fresh(ctx, acct)
	return c.AccessToken, err
}

// Fresh is AccessToken returning the whole credential (account uuid, plan…)
// with the usable access token in it, so a caller that needs both opens the
// sealed credential once.
func (r *Refresher) Fresh(ctx context.Context, acct store.Account) (Credential, error) {
	now := r.now()
	if err := checkType(acct); err != nil {
		return Credential{}, err
	}
	if err := deadError(acct, now); err != nil {
		return Credential{}, err
	}
	c, err := OpenCredential(r.Box, acct.SealedSecret)
	if err != nil {
		return Credential{}, fmt.Errorf("oauth: account %s: %w", acct.ID, err)
	}
	if !r.due(c, now) || (c.RefreshToken == "" && (c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt))) {
		return c, nil
	}
	tok, _, err := r.join(ctx, acct.ID, false, c.AccessToken)
	if err != nil {
		return Credential{}, err
	}
	c.AccessToken = tok
	return c, nil
}

// ForceRefresh refreshes acct after the upstream rejected its access token
// (401), and returns the new token. If another refresh already replaced the
// rejected token with a working one, that token is returned instead of
// spending another refresh. Accounts without a refresh token get an error
// and no cooldown: the caller decides what a rejected setup token means.
func (r *Refresher) ForceRefresh(ctx context.Context, acct store.Account) (string, error) {
	if err := checkType(acct); err != nil {
		return "", err
	}
	if err := deadError(acct, r.now()); err != nil {
		return "", err
	}
	c, err := OpenCredential(r.Box, acct.SealedSecret)
	if err != nil {
		return "", fmt.Errorf("oauth: account %s: %w", acct.ID, err)
	}
	tok, _, err := r.join(ctx, acct.ID, true, c.AccessToken)
	return tok, err
}

// RefreshDue refreshes every enabled OAuth account (Claude, OpenAI, Gemini)
// whose token is due, one after another, and returns how many this instance
// refreshed. It is the background sweep that keeps requests from ever
// waiting on a refresh. Accounts already credential_dead are skipped; one
// account's failure does not stop the sweep, and all failures are returned
// joined.
func (r *Refresher) RefreshDue(ctx context.Context) (int, error) {
	accts, err := r.Store.ListAccounts(ctx)
	if err != nil {
		return 0, fmt.Errorf("oauth: refresh sweep: %w", err)
	}
	n := 0
	var errs []error
	for _, a := range accts {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		now := r.now()
		if a.Disabled || !hasOAuth(a.Platform) || a.Type != store.TypeOAuth || deadError(a, now) != nil {
			continue
		}
		c, err := OpenCredential(r.Box, a.SealedSecret)
		if err != nil {
			errs = append(errs, fmt.Errorf("oauth: account %s: %w", a.ID, err))
			continue
		}
		if c.RefreshToken == "" || !r.due(c, now) {
			continue
		}
		_, refreshed, err := r.join(ctx, a.ID, false, c.AccessToken)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if refreshed {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// join waits for this process's refresh of the account, starting one if none
// runs. The refresh runs detached from ctx: once a refresh token is spent,
// the rotated one must be saved even if the caller that started it has gone.
// Forced refreshes are keyed by the rejected token, so they never share a
// result that predates it.
func (r *Refresher) join(ctx context.Context, id store.AccountID, force bool, base string) (string, bool, error) {
	key := string(id)
	if force {
		key += "\x00force\x00" + base
	}
	r.mu.Lock()
	if r.flights == nil {
		r.flights = map[string]*flight{}
	}
	f := r.flights[key]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		r.flights[key] = f
		go r.run(context.WithoutCancel(ctx), key, f, id, force, base)
	}
	r.mu.Unlock()
	select {
	case <-ctx.Done():
		return "", false, fmt.Errorf("oauth: account %s: waiting for the token refresh: %w", id, ctx.Err())
	case <-f.done:
		return f.token, f.refreshed, f.err
	}
}

func (r *Refresher) run(ctx context.Context, key string, f *flight, id store.AccountID, force bool, base string) {
	ctx, cancel := context.WithTimeout(ctx, flightLimit)
	defer cancel()
	f.token, f.refreshed, f.err = r.refresh(ctx, id, force, base)
	r.mu.Lock()
	delete(r.flights, key)
	r.mu.Unlock()
	close(f.done)
}

// refresh takes the account's lease and refreshes under it; while another
// instance holds the lease it polls the store until that instance's result
// shows up, the lease frees up, or WaitLimit runs out.
func (r *Refresher) refresh(ctx context.Context, id store.AccountID, force bool, base string) (string, bool, error) {
	start := time.Now()
	for {
		lease, ok, err := r.Store.TryLock(ctx, leasePrefix+string(id), RefreshLeaseTTL)
		if err != nil {
			return "", false, fmt.Errorf("oauth: account %s: taking the refresh lease: %w", id, err)
		}
		if ok {
			return r.refreshLeased(ctx, id, force, base, lease)
		}
		if time.Since(start) >= r.waitLimit() {
			return "", false, fmt.Errorf("oauth: account %s: another instance is still refreshing after %s", id, r.waitLimit())
		}
		t := time.NewTimer(r.poll())
		select {
		case <-ctx.Done():
			t.Stop()
			return "", false, fmt.Errorf("oauth: account %s: waiting for another instance's refresh: %w", id, ctx.Err())
		case <-t.C:
		}
		a, c, err := r.load(ctx, id)
		if err != nil {
			return "", false, err
		}
		if err := deadError(a, r.now()); err != nil {
			return "", false, err
		}
		if r.satisfied(c, force, base, r.now()) {
			return c.AccessToken, false, nil
		}
	}
}

// load reads the account and opens its credential.
func (r *Refresher) load(ctx context.Context, id store.AccountID) (store.Account, Credential, error) {
	a, err := r.Store.GetAccount(ctx, id)
	if err != nil {
		return store.Account{}, Credential{}, fmt.Errorf("oauth: account %s: reloading: %w", id, err)
	}
	c, err := OpenCredential(r.Box, a.SealedSecret)
	if err != nil {
		return store.Account{}, Credential{}, fmt.Errorf("oauth: account %s: %w", id, err)
	}
	return a, c, nil
}

// refreshLeased runs while this instance holds the lease: reload, re-check,
// refresh, save, release.
func (r *Refresher) refreshLeased(ctx context.Context, id store.AccountID, force bool, base, lease string) (string, bool, error) {
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.Store.Unlock(uctx, leasePrefix+string(id), lease); err != nil {
			r.log().Warn("oauth refresh: releasing the lease failed; it expires by itself",
				"account", string(id), "err", err)
		}
	}()
	a, c, err := r.load(ctx, id)
	if err != nil {
		return "", false, err
	}
	now := r.now()
	if err := deadError(a, now); err != nil {
		return "", false, err
	}
	if r.satisfied(c, force, base, now) {
		return c.AccessToken, false, nil
	}
	if c.RefreshToken == "" {
		if force {
			return "", false, fmt.Errorf("oauth: account %s: the token was rejected and the account has no refresh token", id)
		}
		if c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt) {
			return c.AccessToken, false, nil
		}
		err := fmt.Errorf("oauth: account %s: %w: the access token expired and there is no refresh token", id, ErrCredentialDead)
		r.markDead(ctx, a, "access token expired and the account has no refresh token")
		return "", false, err
	}
	client, err := r.Client(a)
	if err != nil {
		return "", false, fmt.Errorf("oauth: account %s: building the OAuth client: %w", id, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, refreshCallShare)
	tok, err := client.Refresh(callCtx, c.RefreshToken)
	cancel()
	if err != nil {
		if errors.Is(err, ErrInvalidGrant) {
			r.markDead(ctx, a, "refresh rejected: "+err.Error())
			return "", false, fmt.Errorf("oauth: account %s: %w: %w", id, ErrCredentialDead, err)
		}
		r.log().Warn("oauth refresh failed", "account", string(id), "platform", string(a.Platform), "err", err)
		return "", false, fmt.Errorf("oauth: account %s: %w", id, err)
	}
	next := c.renewed(tok)
	sealed, err := next.Seal(r.Box)
	if err == nil {
		err = r.Store.SetAccountSecret(ctx, id, sealed)
	}
	if err != nil {
		// The old refresh token is spent and the new one is lost with this
		// failure; using the new access token would hide that until it
		// expires, so the account is declared dead now.
		r.markDead(ctx, a, "rotated token could not be saved: "+err.Error())
		return "", false, fmt.Errorf("oauth: account %s: %w: rotated token could not be saved: %w", id, ErrCredentialDead, err)
	}
	r.log().Info("oauth token refreshed", "account", string(id), "platform", string(a.Platform), "expires_at", next.ExpiresAt)
	return next.AccessToken, true, nil
}

// markDead puts the account in a credential_dead cooldown with reason,
// and tells Alerts.
func (r *Refresher) markDead(ctx context.Context, a store.Account, reason string) {
	id, until := a.ID, r.now().Add(DeadCooldown)
	r.log().Error("oauth credential dead", "account", string(id), "reason", reason)
	if err := r.Store.SetCooldown(ctx, id, store.CooldownCredentialDead, until, reason); err != nil {
		r.log().Error("oauth refresh: recording the dead credential failed", "account", string(id), "err", err)
	}
	if r.Alerts != nil {
		r.Alerts.AccountResting(a, "", store.CooldownCredentialDead, until, reason) // alerts hook: never blocks
	}
}
