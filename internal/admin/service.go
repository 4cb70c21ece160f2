// Package admin is the management layer of crs: one Service that creates
// and changes relay keys and upstream accounts and reports usage, used by
// both the `crs` command line and the admin HTTP API, plus that API and its
// authentication. Both front ends share this code so a rule (a validation,
// a view field) exists once.
//
// The JSON views defined here (KeyView, AccountView, UsageView) are the
// stable interface that scripts rely on: `crs … --json` prints them and the
// HTTP API sends them. Fields may be added; none may be renamed or removed.
package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Service manages keys, accounts and usage on top of a Store. Both the CLI
// and the HTTP API call it, so they cannot drift apart.
type Service struct {
	// Store holds the state.
	Store store.Store
	// Box seals account credentials and proxy URLs before they reach the
	// store, and opens proxy URLs for display (redacted).
	Box *secret.Box
	// Now is the clock; nil means time.Now. Tests inject a fixed clock to
	// check expiry and cooldown states.
	Now func() time.Time
	// OAuth is what onboarding Claude OAuth and setup-token accounts needs
	// (see StartOAuth); its zero value uses the real endpoints.
	OAuth OAuthDeps

	// quota caches AccountUsage answers per account.
	quota quotaCache
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// InvalidError reports input that failed validation. Field is the JSON name
// of the offending field (the CLI turns it into its flag name), so every
// front end can tell the user exactly what to fix.
type InvalidError struct {
	Field string
	// Reason is the English sentence the CLI and the JSON API show.
	Reason string
	// Format and Args are what Reason was made of, fmt.Sprintf(Format,
	// Args...), kept so a front end in another language can look the
	// format up in its own catalog and render the reason in its words
	// (the web console does; its tests read every format of this package,
	// so a new or changed one fails there until it is translated). An
	// empty Format means Reason is all there is: the error was built by
	// hand, not by invalid.
	Format string
	Args   []any
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// invalid is the one way this package refuses input. format must be a
// string literal: the console's completeness test finds the formats by
// reading the calls.
func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...), Format: format, Args: args}
}

// IsInvalid reports whether err is (or wraps) an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// newID returns an opaque identifier with a readable prefix ("key_",
// "acc_"), so a pasted ID says what it names. 64 random bits are plenty for
// the handful of keys and accounts one instance holds; a collision would
// surface as store.ErrConflict rather than overwrite anything.
func newID(prefix string) string { return prefix + secret.RandomHex(8) }

// utc returns a copy of t in UTC, or nil, so every time in a view prints
// as RFC 3339 UTC.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
