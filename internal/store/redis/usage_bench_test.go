package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// TestUsagePageBench times usage pages with 1 000 and 1 000 000 records on
// a redis-server of its own, so the shared one is not filled
// (CRS_BENCH_USAGE=1; see storetest.RunUsagePageBench).
func TestUsagePageBench(t *testing.T) {
	storetest.RunUsagePageBench(t, func(t *testing.T) store.Store {
		rdb := goredis.NewClient(&goredis.Options{Addr: redistest.Server(t)})
		t.Cleanup(func() { rdb.Close() })
		return openOn(t, rdb)
	}, 1000)
}
