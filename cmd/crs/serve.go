package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/keystats"
	"github.com/crs-relay/crs/internal/leader"
	"github.com/crs-relay/crs/internal/lockfile"
	"github.com/crs-relay/crs/internal/metrics"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/oauth"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/relay"
	"github.com/crs-relay/crs/internal/scheduler"
	"github.com/crs-relay/crs/internal/server"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/backend"
	"github.com/crs-relay/crs/internal/usage"
	"github.com/crs-relay/crs/internal/web"
)

// Background cadences of a running server.
const (
	reloadEvery     = 500 * time.Millisecond // poll the store's change version (CLI edits show within 2 s, usually 0.5 s)
	fullReloadEvery = 5 * time.Minute        // reload caches even when the version did not move
	leaderLease     = 15 * time.Second       // another instance takes the background jobs over this long after the leader died
	touchEvery      = 5 * time.Second        // flush last-used times of keys and accounts
	refreshEvery    = time.Minute            // look for OAuth tokens close to expiry
	retainEvery     = time.Hour              // remove usage records past USAGE_RETENTION_DAYS
)

// runServe runs the relay until ctx ends (SIGINT/SIGTERM), then drains.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serve(ctx, args, stdout, stderr, os.Getenv, nil)
}

// serve is runServe with its environment and an optional ready callback
// (given the bound address), so tests run the real server in-process.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, ready func(addr string)) error {
	fs := flag.NewFlagSet("crs serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "state directory (default $DATA_DIR, else ./data)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: crs serve [--data-dir DIR]")
		fmt.Fprintln(stderr, "\nEnvironment:")
		for _, v := range config.Vars() {
			fmt.Fprintf(stderr, "  %-30s %s (default %s)\n", v.Name, v.Doc, v.Default)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errReported
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}

	e, err := openEnv(ctx, *dataDir, getenv)
	if err != nil {
		return err
	}
	defer e.Close()
	cfg := e.Config
	lock, err := lockfile.Acquire(filepath.Join(cfg.DataDir, "crs.pid"))
	if err != nil {
		return err
	}
	defer lock.Release()
	log, closeLog, err := server.NewLogger(stderr, server.LogOptions{Level: cfg.LogLevel, Format: cfg.LogFormat, Dir: cfg.LogDir})
	if err != nil {
		return err
	}
	defer closeLog()
	if len(e.Generated) > 0 {
		fmt.Fprintf(stdout, "crs: generated %s into %s (mode 0600); keep that directory safe and backed up\n",
			strings.Join(e.Generated, " and "), cfg.DataDir)
	}
	if e.KeyWarning != "" {
		log.Warn(e.KeyWarning)
	}
	if _, err := admin.Bootstrap(ctx, e.Store, cfg.DataDir, cfg.AdminUsername, cfg.AdminPassword, stdout); err != nil {
		return err
	}
	spoolDir := filepath.Join(cfg.DataDir, "spool")
	if n, err := usage.ReplaySpool(ctx, e.Store, spoolDir); err != nil {
		return fmt.Errorf("replaying the usage spool: %w", err)
	} else if n > 0 {
		log.Info("replayed spooled usage records", "records", n)
	}

	// Alerts: channels from the store (crs notify add), dedup shared by
	// every instance through the limit counters; Run starts with the
	// background jobs below.
	alerts := notify.New(notify.Options{
		Store: e.Store, Box: e.Box, Counters: e.Store.Counters(), Location: cfg.Location, Logger: log,
	})
	rec := usage.NewRecorder(e.Store, usage.Options{SpoolDir: spoolDir, Logger: log, Alerts: alerts})
	rec.Start()
	pool := netx.NewPool(netx.Options{})
	// Onboarding from the admin API shares the relay's pooled transports.
	e.Admin.OAuth.HTTPClient = pool.Client
	sched := scheduler.New(e.Store, scheduler.Options{StickyTTL: cfg.StickyTTL})
	// The price table `crs prices update` stored, else the embedded one;
	// rl.Refresh reloads it when the store changes.
	prices := pricing.NewLive(e.Store)
	// Account statuses, the store's health, the usage queue and the price
	// table are read when Prometheus scrapes, never on a request.
	mx := metrics.New(metrics.Options{Version: version(), Accounts: e.Store.ListAccounts, Ping: e.Store.Ping,
		UsageQueueDepth: rec.QueueDepth, Prices: prices, StoreRoundTrips: roundTrips(e.Store)})
	// The store's counters: in this process for the embedded store, shared
	// by every instance for the shared one.
	counters := e.Store.Counters()
	limits := policy.New(policy.Options{
		Counters: counters, Spend: e.Store.SummarizeUsage, Activate: e.Store.ActivateKey,
		Location: cfg.Location, Queue: cfg.ConcurrencyQueue, QueueTimeout: cfg.ConcurrencyQueueTimeout,
		SlotLease: cfg.SlotLease, QueueObserver: mx,
	})
	tokens := &oauth.Refresher{
		Store: e.Store, Box: e.Box, Logger: log, Ahead: cfg.RefreshAhead, Alerts: alerts,
		// Each account refreshes through its own proxy, at its
		// platform's token endpoint.
		Client: func(a store.Account) (oauth.Renewer, error) {
			proxy, err := e.Box.Open(a.SealedProxy)
			if err != nil {
				return nil, err
			}
			hc, err := pool.Client(string(proxy))
			if err != nil {
				return nil, err
			}
			switch a.Platform {
			case store.PlatformOpenAI:
				return &oauth.OpenAIClient{Endpoints: cfg.OpenAIOAuth, HTTP: hc}, nil
			case store.PlatformGemini:
				return &oauth.GoogleClient{Endpoints: cfg.GoogleOAuth, HTTP: hc}, nil
			}
			return &oauth.Client{Endpoints: cfg.ClaudeOAuth, HTTP: hc}, nil
		},
	}
	rl := relay.New(relay.Config{
		ClaudeBaseURL:     cfg.ClaudeAPIURL,
		OpenAIBaseURL:     cfg.OpenAIAPIURL,
		CodexBaseURL:      cfg.CodexAPIURL,
		GeminiBaseURL:     cfg.GeminiAPIURL,
		CodeAssistBaseURL: cfg.CodeAssistAPIURL,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		MaxAttempts:       cfg.MaxAttempts,
		FirstEventTimeout: cfg.FirstEventTimeout,
		FailoverDeadline:  cfg.FailoverDeadline,
		ClaudeCodeOnly:    cfg.ClaudeCodeOnly,
		Location:          cfg.Location,
		SerialGap:         cfg.UserMessageQueueDelay,
		SerialTimeout:     cfg.UserMessageQueueTimeout,
	}, relay.Deps{
		Keys:      relay.NewKeyCache(e.Store, nil),
		Scheduler: sched,
		Recorder:  rec,
		Prices:    prices,
		Pool:      pool,
		Box:       e.Box,
		Tokens:    tokens,
		Locks:     e.Store,
		Counters:  counters,
		Policy:    limits,
		Spend:     e.Store.SummarizeUsage,
		Metrics:   mx,
		Alerts:    alerts,
		Logger:    log,
	})
	if err := rl.Refresh(ctx); err != nil {
		return err
	}
	clientIP := server.ClientIPFunc(cfg.TrustProxy)
	api := admin.NewAPI(e.Admin, admin.APIOptions{
		JWTSecret: cfg.JWTSecret, ClientIP: clientIP, DataDir: cfg.DataDir, Logger: log,
	})
	var inflight sync.WaitGroup
	// The key holders' JSON route and the console's key page share one
	// handler, so their lookups are throttled together.
	stats := keystats.New(keystats.Options{
		Keys: e.Store, Usage: e.Store, Policy: limits, ClientIP: clientIP, Location: cfg.Location, Logger: log,
	})
	console := web.New(web.Options{
		API: api, Store: e.Store, Policy: limits, Stats: stats, Prices: prices, Secret: cfg.JWTSecret,
		ClientIP: clientIP, Location: cfg.Location, Version: version(), Logger: log,
	})
	console.SetAccountTester(rl)
	console.SetSettingsView(func() web.SettingsInfo {
		return web.SettingsInfo{
			ClaudeCodeOnly: cfg.ClaudeCodeOnly, ConcurrencyQueue: cfg.ConcurrencyQueue,
			ConcurrencyQueueTimeout: cfg.ConcurrencyQueueTimeout, UserMessageQueueDelay: cfg.UserMessageQueueDelay,
			UserMessageQueueTimeout: cfg.UserMessageQueueTimeout, StickyTTL: cfg.StickyTTL, Timezone: cfg.Location.String(),
		}
	})
	handler := server.New(server.Options{
		Relay: rl, Admin: api.Routes(), Store: e.Store, Version: version(), Console: console,
		Logger: log, ClientIP: clientIP, Metrics: mx, MetricsToken: cfg.MetricsToken,
		Stats: stats,
	})
	// Requests hang off baseCtx, so a drain that runs out of time can end
	// them with a cause the relay turns into a proper error event.
	baseCtx, stopRequests := context.WithCancelCause(context.Background())
	defer stopRequests(nil)
	srv := &http.Server{
		Handler:           counted(&inflight, handler),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "crs %s listening on http://%s (data in %s)\n", version(), ln.Addr(), cfg.DataDir)
	if ready != nil {
		ready(ln.Addr().String())
	}

	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		watch(bgCtx, e.Store, rl, log)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		alerts.Run(bgCtx)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		// One instance at a time refreshes ahead of expiry (each refresh
		// also takes the account's own lock, so a request that finds a
		// token due meanwhile cannot refresh it twice).
		leader.Run(bgCtx, e.Store, "leader:background", leaderLease, func(ctx context.Context) {
			var jobs sync.WaitGroup
			jobs.Go(func() { refreshAhead(ctx, tokens, log) })
			jobs.Go(func() { retainUsage(ctx, e.Store, cfg.UsageRetentionDays, log) })
			jobs.Wait()
		}, log)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		stopBG()
		bg.Wait()
		return err
	case <-ctx.Done():
	}

	// Drain: stop accepting, let in-flight streams finish (bounded), then
	// cut what remains and commit every usage record still queued.
	log.Info("shutting down", "drain", cfg.ShutdownTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain timed out; ending open streams", "err", err)
		stopRequests(relay.ErrShuttingDown)
		waitGroup(&inflight, 2*time.Second)
		srv.Close()
	}
	waitGroup(&inflight, 5*time.Second)
	stopBG()
	bg.Wait()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := rec.Close(rctx); err != nil {
		log.Error("usage queue not drained", "err", err)
	}
	if err := rl.FlushTouches(rctx); err != nil {
		log.Warn("last-used times not saved", "err", err)
	}
	pool.CloseIdle()
	log.Info("stopped")
	return nil
}

// watch reloads caches when the store changes and flushes last-used times.
// A change announced by the store (shared mode: pub/sub) reloads at once;
// polling the change version catches what an announcement missed (and every
// change in embedded mode, where the CLI cannot announce), and a full reload
// every fullReloadEvery bounds what even a lost version bump could leave
// stale.
func watch(ctx context.Context, st store.Store, rl *relay.Relay, log *slog.Logger) {
	reload := time.NewTicker(reloadEvery)
	defer reload.Stop()
	touch := time.NewTicker(touchEvery)
	defer touch.Stop()
	full := time.NewTicker(fullReloadEvery)
	defer full.Stop()
	var seen uint64
	if v, err := st.ChangeVersion(ctx); err == nil {
		seen = v
	}
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-st.Changes():
		case <-reload.C:
		case <-full.C:
			force = true
		case <-touch.C:
			if err := rl.FlushTouches(ctx); err != nil {
				log.Warn("last-used times not saved", "err", err)
			}
			continue
		}
		v, err := st.ChangeVersion(ctx)
		if err != nil || (v == seen && !force) {
			continue
		}
		if err := rl.Refresh(ctx); err != nil {
			log.Error("reload failed", "err", err)
			continue
		}
		seen = v
	}
}

// roundTrips reads the shared store's round-trip count for /metrics; nil for
// a store that does not count them.
func roundTrips(st store.Store) func() uint64 {
	if _, ok := backend.RoundTrips(st); !ok {
		return nil
	}
	return func() uint64 {
		n, _ := backend.RoundTrips(st)
		return n
	}
}

// retainUsage removes usage records older than days, at start and then
// every retainEvery; 0 days keeps them forever. Rollups stay.
func retainUsage(ctx context.Context, st store.Usage, days int, log *slog.Logger) {
	if days <= 0 {
		return
	}
	t := time.NewTicker(retainEvery)
	defer t.Stop()
	for {
		usage.Retain(ctx, st, days, time.Now, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshAhead refreshes OAuth tokens before they expire, so requests
// rarely wait for a refresh: once at start (a server that was down may find
// tokens already due) and then every refreshEvery.
func refreshAhead(ctx context.Context, tokens *oauth.Refresher, log *slog.Logger) {
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		if n, err := tokens.RefreshDue(ctx); err != nil {
			log.Warn("background token refresh", "refreshed", n, "err", err)
		} else if n > 0 {
			log.Info("background token refresh", "refreshed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func counted(wg *sync.WaitGroup, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		h.ServeHTTP(w, r)
	})
}

func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// servePprof serves the Go profiler on its own listener, so it is never
// reachable through the relay's port.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("profiling enabled", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
