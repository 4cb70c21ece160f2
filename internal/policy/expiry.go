package policy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// checkExpiry refuses a key past its fixed expiry or past the end of its
// activation. The key lookup already treats a fixed expiry as a key
// status; policy reports it too so that every refusal has a code.
func (e *Engine) checkExpiry(key store.Key, now time.Time) *Denial {
	if key.ExpiresAt != nil && !now.Before(*key.ExpiresAt) {
		return expired(*key.ExpiresAt)
	}
	if key.Policy.ActivateFor > 0 {
		if at, ok := e.activatedAt(key); ok {
			if end := at.Add(key.Policy.ActivateFor); !now.Before(end) {
				return expired(end)
			}
		}
	}
	return nil
}

func expired(at time.Time) *Denial {
	return &Denial{
		Status:  http.StatusUnauthorized,
		Type:    TypeAuthentication,
		Code:    CodeKeyExpired,
		Message: fmt.Sprintf("this key expired at %s; ask the relay's admin for a new one", at.Format(time.RFC3339)),
	}
}

// activatedAt is the key's activation: from the key as loaded, or from an
// activation this engine made or learnt since.
func (e *Engine) activatedAt(key store.Key) (time.Time, bool) {
	if key.ActivatedAt != nil {
		return *key.ActivatedAt, true
	}
	if v, ok := e.activated.Load(key.ID); ok {
		return v.(time.Time), true
	}
	return time.Time{}, false
}

// activate starts the expiry clock of a key with ActivateFor on its first
// real use. count_tokens is not real use, nor is a stats lookup (Status
// never activates). The activation that counts is the store's: when
// another instance activated the key long ago, the request may find it
// expired.
func (e *Engine) activate(ctx context.Context, key store.Key, req Request, now time.Time) *Denial {
	if key.Policy.ActivateFor <= 0 || req.CountTokens {
		return nil
	}
	if _, ok := e.activatedAt(key); ok {
		return nil
	}
	at := now
	if e.activateFn != nil {
		var err error
		if at, err = e.activateFn(ctx, key.ID, now); err != nil {
			return unavailable("activating the key", err)
		}
	}
	v, _ := e.activated.LoadOrStore(key.ID, at)
	if end := v.(time.Time).Add(key.Policy.ActivateFor); !now.Before(end) {
		return expired(end)
	}
	return nil
}
