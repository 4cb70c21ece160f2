package usage

import (
	"context"
	"log/slog"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Retain is one pass of usage retention: it removes the usage records
// created more than days days before now, cut at the start of that hour,
// and returns how many it removed. days <= 0 keeps everything. The hourly
// and daily rollups are left alone: they are the long-term totals that
// summaries, spend limits and charts read for any span, so only the
// per-request detail goes.
//
// It is meant for one instance at a time (the leader's periodic job); a
// second pass at once is harmless, as removing is idempotent. The store
// removes in short batches, so relaying goes on meanwhile; a cancelled ctx
// stops between batches and keeps what was removed.
func Retain(ctx context.Context, st store.Usage, days int, now func() time.Time, log *slog.Logger) (int, error) {
	if days <= 0 {
		return 0, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	before := now().Add(-time.Duration(days) * 24 * time.Hour).Truncate(time.Hour)
	start := time.Now()
	n, err := st.PurgeUsage(ctx, before)
	if err != nil {
		log.Warn("usage retention failed", "before", before, "removed", n, "err", err)
		return n, err
	}
	lvl := slog.LevelDebug
	if n > 0 {
		lvl = slog.LevelInfo
	}
	log.Log(ctx, lvl, "usage retention", "before", before, "removed", n, "days", days,
		"took", time.Since(start).Round(time.Millisecond))
	return n, nil
}
