package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/storetest"
)

// TestUsagePageBench times usage pages with 1 000 and 1 000 000 records in
// a file of its own (CRS_BENCH_USAGE=1; see storetest.RunUsagePageBench).
func TestUsagePageBench(t *testing.T) {
	storetest.RunUsagePageBench(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "crs.db"), Options{Location: storetest.Zone()})
	}, 10_000)
}
