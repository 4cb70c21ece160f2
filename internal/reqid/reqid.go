// Package reqid carries the request id through a context. The server sets
// it once per request (and answers it in x-request-id); the relay uses it
// as the key of usage records.
package reqid

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/crs-relay/crs/internal/secret"
)

type ctxKey struct{}

// New returns a fresh request id: "req_", 12 hex digits of the Unix time in
// milliseconds, then 16 random hex digits. Ids sort by time, so the usage
// table's unique index on them grows at its end instead of at random
// pages, which keeps each commit's set of dirty pages small.
func New() string {
	var ts [6]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		ts[i] = byte(ms)
		ms >>= 8
	}
	return "req_" + hex.EncodeToString(ts[:]) + secret.RandomHex(8)
}

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
