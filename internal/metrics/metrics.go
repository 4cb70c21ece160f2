// Package metrics says what a running crs is doing, in the Prometheus text
// format (GET /metrics), and times each request for the access log.
//
// Two kinds of state live here. Metrics holds the collectors of one server:
// counters and histograms that the relay and the HTTP layer feed as
// requests pass, and gauges read from the store only when Prometheus
// scrapes. Exchange is one request's own timings and facts (key name,
// account, model, tokens), carried in its context from the server's
// middleware to the relay's hooks and back, so the access log line and the
// x-crs-overhead-ms header come from the same measurement as the metrics.
//
// Every hook is a method on *Metrics that accepts a nil receiver: a relay
// built without metrics (tests, tools) still fills the request's Exchange,
// and one without an Exchange in its context still counts. Labels are
// bounded: routes are the server's patterns, platforms and outcomes are
// small fixed sets, and models pass through a capped set (labels.go).
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/provider"
	"github.com/crs-relay/crs/internal/store"
)

// Options are what New needs besides its collectors. Every field is
// optional.
type Options struct {
	// Version is reported as crs_build_info{version}.
	Version string
	// Accounts lists the upstream accounts for crs_accounts; nil leaves
	// that gauge out. It is called once per scrape, never on a request.
	Accounts func(context.Context) ([]store.Account, error)
	// Ping checks the store for crs_store_up and crs_store_ping_seconds;
	// nil leaves them out. Like Accounts, it runs only on a scrape.
	Ping func(context.Context) error
	// ScrapeTimeout bounds each of Accounts and Ping on a scrape (default
	// 2 s), so a hung store makes the store gauges say so instead of
	// hanging Prometheus.
	ScrapeTimeout time.Duration
	// Now is the clock that decides account statuses (default time.Now).
	Now func() time.Time
	// UsageQueueDepth reports the usage records waiting to be committed
	// (usage.Recorder.QueueDepth) for crs_usage_queue_depth; nil leaves
	// it out. Read on a scrape.
	UsageQueueDepth func() int
	// Prices is the price table in use, for crs_price_table_info; nil
	// leaves it out. Read on a scrape, so a reloaded table shows at once.
	Prices pricing.Source
	// StoreRoundTrips counts the shared store's round trips since start
	// for crs_store_round_trips_total; nil (the embedded store) leaves it
	// out.
	StoreRoundTrips func() uint64
}

// Metrics is one server's collectors on its own registry (never the
// global default registry, so tests and several servers in one process
// cannot see each other's counts). Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	failovers *prometheus.CounterVec
	firstByte *prometheus.HistogramVec
	duration  *prometheus.HistogramVec
	overhead  *prometheus.HistogramVec
	tokens    *prometheus.CounterVec
	cost      *prometheus.CounterVec
	streams   *prometheus.GaugeVec
	queued    prometheus.Gauge
	queueWait *prometheus.HistogramVec

	models   *labelSet
	statuses statusLabels
}

// Histogram buckets, in seconds. Time to first byte and duration span a
// cache hit (100 ms) to a long agent turn; overhead is crs's own time,
// normally well under a millisecond, so its buckets start at 50 µs.
var (
	firstByteBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120}
	durationBuckets  = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
	overheadBuckets  = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
	// A key's queue wait ends by CONCURRENCY_QUEUE_TIMEOUT (30 s by
	// default); the buckets reach past it for longer settings.
	queueWaitBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120}
)

// New builds the collectors and registers them, with the Go runtime and
// process collectors, on a fresh registry.
func New(o Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_http_requests_total",
			Help: "HTTP requests answered, by route pattern, platform (none for requests no pool served) and status.",
		}, []string{"route", "platform", "status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_upstream_attempts_total",
			Help: "Upstream attempts by outcome: ok, client_error, canceled (the client left first), or the failover kind " +
				"(cooling_down, rate_limited, credential_dead, blocked, failover when the account was not rested).",
		}, []string{"platform", "outcome"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_upstream_failovers_total",
			Help: "Moves to another account before the first byte, by the failed attempt's outcome.",
		}, []string{"platform", "reason"}),
		firstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crs_first_byte_seconds",
			Help:    "Request start to the first byte of an upstream answer written to the client (a stream's first event, a whole non-stream body).",
			Buckets: firstByteBuckets,
		}, []string{"platform"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crs_request_duration_seconds",
			Help:    "Request start to the end of the response, for requests a pool served.",
			Buckets: durationBuckets,
		}, []string{"platform"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "crs_relay_overhead_seconds",
			Help: "Time spent in crs itself: the request's duration minus the time an upstream request was open " +
				"and minus the wait in its key's concurrency queue, plus usage bookkeeping done while an upstream request was open.",
			Buckets: overheadBuckets,
		}, []string{"platform"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_tokens_total",
			Help: "Tokens in recorded usage, by platform, model and class (input, output, cache_write_5m, cache_write_1h, cache_read).",
		}, []string{"platform", "model", "class"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_cost_usd_total",
			Help: "Cost of recorded usage in US dollars at list prices, by platform and model.",
		}, []string{"platform", "model"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crs_streams_in_flight",
			Help: "Streams past their first byte and not yet ended.",
		}, []string{"platform"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crs_key_queue_depth",
			Help: "Requests on this instance waiting in a relay key's concurrency queue for a slot.",
		}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "crs_key_queue_wait_seconds",
			Help: "Time requests waited in a relay key's concurrency queue, by how the wait ended: " +
				"served (a slot came free), timeout (answered 429), canceled (the client left), error (the counters failed).",
			Buckets: queueWaitBuckets,
		}, []string{"outcome"}),
		models:   newLabelSet(maxModels),
		statuses: newStatusLabels(),
	}
	m.reg.MustRegister(m.requests, m.attempts, m.failovers, m.firstByte, m.duration, m.overhead,
		m.tokens, m.cost, m.streams, m.queued, m.queueWait,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newScrapeCollector(o))
	if o.Version != "" {
		info := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crs_build_info", Help: "Always 1; the version of the running binary.",
			ConstLabels: prometheus.Labels{"version": o.Version},
		})
		info.Set(1)
		m.reg.MustRegister(info)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
// Collection errors (a store that does not answer) do not fail the
// scrape: the rest is still served, and the store gauges say what failed.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// RequestDone counts one answered request and, when a pool served it,
// observes its duration and overhead. route is the server's pattern for
// the request ("POST /api/v1/messages"), "" when none matched.
func (m *Metrics) RequestDone(route string, status int, s Summary) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	platform := platformLabel(s.Platform)
	m.requests.WithLabelValues(route, platform, m.statuses.of(status)).Inc()
	if s.Platform == "" {
		return
	}
	m.duration.WithLabelValues(platform).Observe(s.Total.Seconds())
	m.overhead.WithLabelValues(platform).Observe(s.Overhead.Seconds())
}

// The relay's hooks follow, in the order a request meets them.

// Authenticated notes the relay key a request authenticated with; the
// access log shows its name, never the key.
func (m *Metrics) Authenticated(ctx context.Context, key store.Key) {
	if x := ExchangeFrom(ctx); x != nil {
		x.keyName = key.Name
	}
}

// Serving notes the pool and model of a request the relay is about to
// send upstream.
func (m *Metrics) Serving(ctx context.Context, platform store.Platform, model string) {
	if x := ExchangeFrom(ctx); x != nil {
		x.platform, x.model = platform, model
	}
}

// Sending marks an attempt's request leaving for acct's upstream; the
// time until UpstreamDone counts as waiting on the upstream, not as
// overhead. Call UpstreamDone after each Sending (further calls do
// nothing, so the relay may end the span early and again by defer).
func (m *Metrics) Sending(ctx context.Context, acct store.Account) {
	if x := ExchangeFrom(ctx); x != nil {
		x.accountID, x.accountName = acct.ID, acct.Name
		x.attempts++
		x.openSpan(time.Now())
	}
}

// UpstreamDone marks the end of the attempt Sending began: the answer was
// read to its end, or the attempt gave up on it.
func (m *Metrics) UpstreamDone(ctx context.Context) {
	if x := ExchangeFrom(ctx); x != nil {
		x.closeSpan(time.Now())
	}
}

// Committed marks the commit point: the first byte of the upstream's
// answer (whose status it was) goes to the client, and no other account
// will be tried. A 2xx counts as an ok attempt and a time to first byte;
// anything else the client gets as it came is a client_error.
func (m *Metrics) Committed(ctx context.Context, platform store.Platform, status int) {
	x := ExchangeFrom(ctx)
	if x != nil && x.committed.IsZero() {
		x.committed = time.Now()
	}
	if m == nil {
		return
	}
	p := platformLabel(platform)
	if status < 200 || status > 299 {
		m.attempts.WithLabelValues(p, outcomeClientError).Inc()
		return
	}
	m.attempts.WithLabelValues(p, outcomeOK).Inc()
	if x != nil {
		m.firstByte.WithLabelValues(p).Observe(x.committed.Sub(x.start).Seconds())
	}
}

// Failed counts an attempt that ended before the commit point with
// outcome o; the relay may try another account next.
func (m *Metrics) Failed(platform store.Platform, o provider.Outcome) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(platformLabel(platform), failureLabel(o)).Inc()
}

// Abandoned counts an attempt whose client left (or whose server began
// shutting down) before the commit point.
func (m *Metrics) Abandoned(platform store.Platform) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(platformLabel(platform), outcomeCanceled).Inc()
}

// FailingOver counts the move to another account after an attempt that
// failed with outcome o.
func (m *Metrics) FailingOver(platform store.Platform, o provider.Outcome) {
	if m == nil {
		return
	}
	m.failovers.WithLabelValues(platformLabel(platform), failureLabel(o)).Inc()
}

// StreamOpened and StreamClosed bracket a stream between its first byte
// and its end, for crs_streams_in_flight.
func (m *Metrics) StreamOpened(platform store.Platform) {
	if m == nil {
		return
	}
	m.streams.WithLabelValues(platformLabel(platform)).Inc()
}

// StreamClosed ends what StreamOpened began.
func (m *Metrics) StreamClosed(platform store.Platform) {
	if m == nil {
		return
	}
	m.streams.WithLabelValues(platformLabel(platform)).Dec()
}

var _ policy.QueueObserver = (*Metrics)(nil)

// QueueEntered notes a request starting to wait in its key's concurrency
// queue (policy.QueueObserver).
func (m *Metrics) QueueEntered(ctx context.Context) {
	if m == nil {
		return
	}
	m.queued.Inc()
}

// QueueLeft notes the end of a wait QueueEntered began. The wait is taken
// out of the request's overhead: it is the key's limit at work.
func (m *Metrics) QueueLeft(ctx context.Context, waited time.Duration, outcome policy.QueueOutcome) {
	if x := ExchangeFrom(ctx); x != nil {
		x.queued += waited
	}
	if m == nil {
		return
	}
	m.queued.Dec()
	m.queueWait.WithLabelValues(string(outcome)).Observe(waited.Seconds())
}

// Recorded counts one usage record's tokens and cost (picodollars), and
// notes how long recording it took: the relay waits for a record to be
// durable before the client sees the response end, and that wait is crs's
// own time even though the upstream request is still open around it.
func (m *Metrics) Recorded(ctx context.Context, platform store.Platform, model string, tk pricing.Tokens, costPico int64, took time.Duration) {
	if x := ExchangeFrom(ctx); x != nil {
		x.addUsage(tk, costPico, took)
	}
	if m == nil {
		return
	}
	p, mod := platformLabel(platform), m.models.label(model)
	for _, c := range [...]struct {
		class string
		n     int64
	}{
		{"input", tk.Input}, {"output", tk.Output}, {"cache_write_5m", tk.CacheWrite5m},
		{"cache_write_1h", tk.CacheWrite1h}, {"cache_read", tk.CacheRead},
	} {
		if c.n > 0 {
			m.tokens.WithLabelValues(p, mod, c.class).Add(float64(c.n))
		}
	}
	if costPico > 0 {
		m.cost.WithLabelValues(p, mod).Add(float64(costPico) / 1e12)
	}
}
