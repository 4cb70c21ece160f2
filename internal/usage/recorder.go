// Package usage makes usage records durable. A Recorder group-commits
// records to the store: the first record waiting starts a commit at once,
// and whatever queues up while a commit runs forms the next batch, so under
// load many records share one transaction and nothing waits on a timer.
//
// The relay calls Record for the final event of each response and releases
// that event to the client only when Record returns: the record is then
// committed, or (after MaxWait) written to an fsynced spool file that the
// next start replays. Either way, a response the client saw complete is
// never missing from usage, even after kill -9.
package usage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// Options tune a Recorder. Zero values take the defaults.
type Options struct {
	// MaxWait bounds how long Record waits for a commit before spooling.
	MaxWait time.Duration // default 1s
	// MaxBatch bounds the records in one transaction.
	MaxBatch int // default 256
	// Linger is how long a batch waits for company while records arrive
	// concurrently (never for a lone record); negative disables it.
	Linger time.Duration // default 5ms
	// SpoolDir holds spool files; required.
	SpoolDir string
	Logger   *slog.Logger
	// Alerts hears about records written to the spool (a
	// notify.Dispatcher); nil tells no one. The call must return at once.
	Alerts Alerts
}

// Alerts receives spool writes: records the store did not take in time.
type Alerts interface {
	UsageSpooled(records int, file string)
}

// Recorder commits usage records in batches. Call Start, then Close.
type Recorder struct {
	st    store.Usage
	opts  Options
	queue chan pending
	log   *slog.Logger

	spoolMu sync.Mutex
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

type pending struct {
	rec  store.UsageRecord
	done chan error // buffered 1
}

// NewRecorder returns a Recorder writing to st.
func NewRecorder(st store.Usage, opts Options) *Recorder {
	if opts.MaxWait <= 0 {
		opts.MaxWait = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Linger == 0 {
		opts.Linger = 5 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Recorder{
		st:     st,
		opts:   opts,
		queue:  make(chan pending, 4096),
		log:    opts.Logger,
		closed: make(chan struct{}),
	}
}

// Record hands rec to the committer and waits until it is committed, or
// MaxWait passed, or ctx ended; in the last two cases the record is written
// to the spool before Record returns. The error is non-nil only when even
// the spool failed (the record may then be lost, and the caller logs it).
func (r *Recorder) Record(ctx context.Context, rec store.UsageRecord) error {
	p := pending{rec: rec, done: make(chan error, 1)}
	select {
	case <-r.closed:
		return r.spool([]store.UsageRecord{rec})
	default:
	}
	timer := time.NewTimer(r.opts.MaxWait)
	defer timer.Stop()
	select {
	case r.queue <- p:
	case <-timer.C:
		return r.spool([]store.UsageRecord{rec})
	case <-r.closed:
		return r.spool([]store.UsageRecord{rec})
	}
	select {
	case err := <-p.done:
		return err
	case <-timer.C:
	case <-ctx.Done():
	}
	// The committer still holds the record and may commit it later; the
	// spool copy is idempotent on (request id, attempt), so both may land.
	return r.spool([]store.UsageRecord{rec})
}

// QueueDepth is the number of records handed to Record that wait for the
// committer to take them into a batch (at most QueueCapacity). A depth
// that stays up means the store commits slower than records arrive; at
// capacity, Record waits and then spools.
func (r *Recorder) QueueDepth() int { return len(r.queue) }

// QueueCapacity is the most records the queue holds.
func (r *Recorder) QueueCapacity() int { return cap(r.queue) }

// Start launches the committer. It runs until Close, then drains the
// queue: everything queued is committed or spooled.
func (r *Recorder) Start() {
	r.wg.Add(1)
	go r.run()
}

func (r *Recorder) run() {
	defer r.wg.Done()
	batch := make([]pending, 0, r.opts.MaxBatch)
	busy := false // the last batch held more than one record
	for {
		var first pending
		select {
		case first = <-r.queue:
		case <-r.closed:
			r.drain(batch)
			return
		}
		batch = r.fill(append(batch[:0], first))
		// Under concurrent load, waiting a moment lets more records share
		// the transaction: a commit rewrites the same few pages however
		// many rows it carries. A lone stream never waits.
		if (busy || len(batch) > 1) && r.opts.Linger > 0 && len(batch) < r.opts.MaxBatch {
			batch = r.linger(batch)
		}
		busy = len(batch) > 1
		r.commit(batch)
	}
}

// fill adds what is already queued, without waiting.
func (r *Recorder) fill(batch []pending) []pending {
	for len(batch) < r.opts.MaxBatch {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// linger adds what arrives within Linger.
func (r *Recorder) linger(batch []pending) []pending {
	t := time.NewTimer(r.opts.Linger)
	defer t.Stop()
	for len(batch) < r.opts.MaxBatch {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		case <-t.C:
			return batch
		case <-r.closed:
			return batch
		}
	}
	return batch
}

func (r *Recorder) drain(batch []pending) {
	for {
		batch = r.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		r.commit(batch)
	}
}

// commit stores one batch. A store failure sends the batch to the spool, so
// records survive an outage of the store; the spool is replayed at start.
func (r *Recorder) commit(batch []pending) {
	recs := make([]store.UsageRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	// No deadline here on purpose: a cancellable context costs the SQLite
	// driver and database/sql a watcher goroutine per statement, and a
	// stalled store is bounded anyway (busy_timeout; Record spools after
	// MaxWait).
	_, err := r.st.InsertUsage(context.Background(), recs)
	if err != nil {
		r.log.Error("usage commit failed; spooling", "records", len(recs), "err", err)
		err = r.spool(recs)
	}
	for _, p := range batch {
		p.done <- err
	}
}

// Close stops accepting records and waits (bounded by ctx) for the queue
// to drain.
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() { close(r.closed) })
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// spool appends records to today's spool file and fsyncs it.
func (r *Recorder) spool(recs []store.UsageRecord) error {
	r.spoolMu.Lock()
	defer r.spoolMu.Unlock()
	if err := os.MkdirAll(r.opts.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("usage spool: %w", err)
	}
	name := filepath.Join(r.opts.SpoolDir, "spool-"+time.Now().UTC().Format("20060102")+".jsonl")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("usage spool: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, rec := range recs {
		if err := enc.Encode(rec); err != nil {
			f.Close()
			return fmt.Errorf("usage spool: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("usage spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("usage spool: %w", err)
	}
	r.log.Warn("usage records spooled", "records", len(recs), "file", name)
	if r.opts.Alerts != nil {
		r.opts.Alerts.UsageSpooled(len(recs), name) // alerts hook: never blocks
	}
	return f.Close()
}

// ReplaySpool inserts every spooled record (idempotently) and removes the
// spool files it fully stored. Call it at start, before serving.
func ReplaySpool(ctx context.Context, st store.Usage, dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "spool-") && strings.HasSuffix(e.Name(), ".jsonl") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	total := 0
	for _, n := range names {
		path := filepath.Join(dir, n)
		recs, err := readSpool(path)
		if err != nil {
			return total, err
		}
		for i := 0; i < len(recs); i += 256 {
			end := min(i+256, len(recs))
			added, err := st.InsertUsage(ctx, recs[i:end])
			if err != nil {
				return total, fmt.Errorf("replay %s: %w", n, err)
			}
			total += added
		}
		if err := os.Remove(path); err != nil {
			return total, err
		}
	}
	return total, nil
}

// readSpool reads a spool file. A torn last line (a crash mid-write) is
// skipped: its record was never acknowledged to a client.
func readSpool(path string) ([]store.UsageRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []store.UsageRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var rec store.UsageRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}
