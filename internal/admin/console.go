package admin

import (
	"context"
	"errors"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// The web console signs in through the same sessions, throttle and password
// rules as the JSON API; these are its entry points. The console carries the
// token in an HttpOnly cookie, the API in a Bearer header.

// ErrBadLogin is a wrong username or password (never said which).
var ErrBadLogin = errBadLogin

// ErrUnauthorized is a missing, unknown, expired or superseded session.
var ErrUnauthorized = errUnauthorized

// ThrottledError says that too many logins failed from one address.
type ThrottledError struct{ Wait time.Duration }

func (e *ThrottledError) Error() string { return "too many failed logins from this address" }

// Login checks the credentials of a sign-in from addr and returns a new
// session token. Failures count against addr, as the API's login does.
func (a *API) Login(ctx context.Context, addr, username, password string) (token string, expires time.Time, err error) {
	if ok, wait := a.throttle.Allow(addr); !ok {
		return "", time.Time{}, &ThrottledError{Wait: wait}
	}
	token, expires, err = a.sess.login(ctx, username, password)
	if err != nil {
		if errors.Is(err, errBadLogin) {
			a.throttle.Fail(addr)
			a.log.WarnContext(ctx, "admin login failed", "client", addr, "via", "console")
		}
		return "", time.Time{}, err
	}
	a.throttle.Succeed(addr)
	return token, expires, nil
}

// Session returns the session of token, or ErrUnauthorized.
func (a *API) Session(ctx context.Context, token string) (store.AdminSession, error) {
	return a.sess.check(ctx, token)
}

// Logout ends the session of token; an unknown one is not an error.
func (a *API) Logout(ctx context.Context, token string) error {
	err := a.svc.Store.DeleteSession(ctx, secret.Hash(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// ChangePassword checks current, stores next, ends every session (token's
// included) and returns a new one. A refusal is an *InvalidError naming the
// field.
func (a *API) ChangePassword(ctx context.Context, token, current, next string) (string, time.Time, error) {
	tok, exp, err := a.sess.changePassword(ctx, current, next)
	if err != nil {
		return "", time.Time{}, err
	}
	a.svc.Store.DeleteSession(ctx, secret.Hash(token))
	if err := forgetInitPassword(a.opts.DataDir, a.svc.now()); err != nil {
		a.log.ErrorContext(ctx, "admin password changed but init.json not updated", "err", err)
	}
	return tok, exp, nil
}

// Service returns the management service the API runs on.
func (a *API) Service() *Service { return a.svc }
