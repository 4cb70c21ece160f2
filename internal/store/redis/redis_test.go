package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// openOn opens a Store under a prefix of the test's own on rdb and closes it
// when the test ends.
func openOn(t *testing.T, rdb goredis.UniversalClient) *Store {
	t.Helper()
	s, err := Open(t.Context(), Options{Client: rdb, Prefix: redistest.Prefix(t, rdb), Location: storetest.Zone()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	rdb := redistest.Client(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openOn(t, rdb) })
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	rdb := redistest.ClusterClient(t, redistest.Cluster(t))
	storetest.Run(t, func(t *testing.T) store.Store { return openOn(t, rdb) })
}

func TestCounters(t *testing.T) {
	rdb := redistest.Client(t)
	storetest.RunCounters(t, func(t *testing.T) store.LimitCounters { return openOn(t, rdb).Counters() }, nil)
}

func TestCountersCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	rdb := redistest.ClusterClient(t, redistest.Cluster(t))
	storetest.RunCounters(t, func(t *testing.T) store.LimitCounters { return openOn(t, rdb).Counters() }, nil)
}
