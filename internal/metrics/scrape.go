package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
)

// scrapeCollector reads what is cheaper to look up when Prometheus asks
// than to track on every change: account statuses, the store's health,
// the usage queue and the price table in use. Nothing here runs on a
// request's path.
type scrapeCollector struct {
	accounts   func(context.Context) ([]store.Account, error)
	ping       func(context.Context) error
	usageQueue func() int
	trips      func() uint64
	prices     pricing.Source
	timeout    time.Duration
	now        func() time.Time

	accountsDesc   *prometheus.Desc
	storeUpDesc    *prometheus.Desc
	storePing      *prometheus.Desc
	usageQueueDesc *prometheus.Desc
	tripsDesc      *prometheus.Desc
	pricesDesc     *prometheus.Desc
}

func newScrapeCollector(o Options) *scrapeCollector {
	if o.ScrapeTimeout <= 0 {
		o.ScrapeTimeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &scrapeCollector{
		accounts: o.Accounts, ping: o.Ping, usageQueue: o.UsageQueueDepth, trips: o.StoreRoundTrips, prices: o.Prices, timeout: o.ScrapeTimeout, now: o.Now,
		accountsDesc: prometheus.NewDesc("crs_accounts",
			"Upstream accounts by platform and status (active, disabled, unschedulable, or the cooldown kind while one runs).",
			[]string{"platform", "status"}, nil),
		storeUpDesc: prometheus.NewDesc("crs_store_up",
			"1 when the store answered a ping during this scrape, else 0.", nil, nil),
		storePing: prometheus.NewDesc("crs_store_ping_seconds",
			"How long the store took to answer a ping during this scrape (the timeout when it did not).", nil, nil),
		usageQueueDesc: prometheus.NewDesc("crs_usage_queue_depth",
			"Usage records waiting for the committer to store them; one that stays up means the store is slower than the traffic.", nil, nil),
		tripsDesc: prometheus.NewDesc("crs_store_round_trips_total",
			"Round trips to the shared store (Redis) since start: a command, a pipeline or a script is one.", nil, nil),
		pricesDesc: prometheus.NewDesc("crs_price_table_info",
			"Always 1; the price table in use: its version, as_of date and origin (embedded, or the file or URL crs prices update read).",
			[]string{"version", "as_of", "origin"}, nil),
	}
}

// Describe sends the descriptors of what Collect may send.
func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.accounts != nil {
		ch <- c.accountsDesc
	}
	if c.ping != nil {
		ch <- c.storeUpDesc
		ch <- c.storePing
	}
	if c.usageQueue != nil {
		ch <- c.usageQueueDesc
	}
	if c.trips != nil {
		ch <- c.tripsDesc
	}
	if c.prices != nil {
		ch <- c.pricesDesc
	}
}

// Collect pings the store and counts accounts by status. A failed account
// listing sends an invalid metric, which the handler reports as a scrape
// error while still serving everything else.
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.usageQueue != nil {
		ch <- prometheus.MustNewConstMetric(c.usageQueueDesc, prometheus.GaugeValue, float64(c.usageQueue()))
	}
	if c.trips != nil {
		ch <- prometheus.MustNewConstMetric(c.tripsDesc, prometheus.CounterValue, float64(c.trips()))
	}
	if c.prices != nil {
		i := c.prices.Table().Info()
		ch <- prometheus.MustNewConstMetric(c.pricesDesc, prometheus.GaugeValue, 1, i.Version, i.AsOf, i.Origin)
	}
	if c.ping != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		start := time.Now()
		err := c.ping(ctx)
		took := time.Since(start)
		cancel()
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.storeUpDesc, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(c.storePing, prometheus.GaugeValue, took.Seconds())
	}
	if c.accounts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		accts, err := c.accounts(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.accountsDesc, err)
			return
		}
		type key struct{ platform, status string }
		counts := map[key]int{}
		now := c.now()
		for _, a := range accts {
			s := a.Status(now)
			if s == store.AccountActive && a.Unschedulable {
				s = "unschedulable"
			}
			counts[key{platformLabel(a.Platform), s}]++
		}
		for k, n := range counts {
			ch <- prometheus.MustNewConstMetric(c.accountsDesc, prometheus.GaugeValue, float64(n), k.platform, k.status)
		}
	}
}
