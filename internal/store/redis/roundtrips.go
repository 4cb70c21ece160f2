package redis

import (
	"context"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// roundTrips counts what the client sends: one command, one pipeline or one
// transaction is one round trip (a script is one command). Benchmarks and
// GET /metrics read it to show what a request costs in Redis.
type roundTrips struct{ n atomic.Uint64 }

func (h *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

var _ goredis.Hook = (*roundTrips)(nil)

// RoundTrips returns how many round trips the store's client made since
// Open; 0 when the client was not the store's own (Options.OwnClient).
func (s *Store) RoundTrips() uint64 { return s.trips.n.Load() }
