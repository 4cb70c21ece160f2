// Package reqid carries the request id through a context. The server sets
// it once per request (and answers it in x-request-id); the relay uses it
// as the key of usage records.
package reqid

import (
	"context"

	"github.com/crs-relay/crs/internal/secret"
)

type ctxKey struct{}

// New returns a fresh request id.
func New() string { return "req_" + secret.RandomHex(12) }

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the id in ctx, or a fresh one when there is none.
func From(ctx context.Context) string {
	if id, ok := ctx.Value(ctxKey{}).(string); ok && id != "" {
		return id
	}
	return New()
}
