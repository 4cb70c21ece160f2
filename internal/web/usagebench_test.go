package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/redis"
	"github.com/crs-relay/crs/internal/store/redis/redistest"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/store/storetest"

	goredis "github.com/redis/go-redis/v9"
)

// TestUsagePageLoadBench times what an admin waits for: GET /web/usage, the
// whole page (records, totals, cost by class, trend), rendered, over the
// real console, with 1 000 and with 1 000 000 records in each backend;
// and the other pages that total usage (dashboard, keys, accounts). It
// runs only with CRS_BENCH_USAGE=1 (filling takes about a minute per
// backend); docs/benchmarks.md has the figures.
//
//	CRS_BENCH_USAGE=1 go test -count=1 -run TestUsagePageLoadBench -v ./internal/web/
func TestUsagePageLoadBench(t *testing.T) {
	if os.Getenv("CRS_BENCH_USAGE") != "1" {
		t.Skip("set CRS_BENCH_USAGE=1 to time the usage page with 1 000 000 records")
	}
	backends := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			s, err := sqlite.Open(t.Context(), t.TempDir()+"/crs.db", sqlite.Options{Location: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"redis": func(t *testing.T) store.Store {
			rdb := goredis.NewClient(&goredis.Options{Addr: redistest.Server(t, "--appendonly", "no")})
			s, err := redis.Open(t.Context(), redis.Options{Client: rdb, OwnClient: true, Location: time.UTC})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for _, name := range []string{"sqlite", "redis"} {
		t.Run(name, func(t *testing.T) {
			st := backends[name](t)
			base, hc := benchConsole(t, st)
			pages := []string{"/web/usage", "/web/usage?key=key_07", "/web/usage?account=acc_03", "/web/usage?model=claude-model-2",
				"/web/usage?key=key_07&model=claude-model-2", "/web", "/web/keys", "/web/accounts"}
			have := 0
			rows := map[string][]time.Duration{}
			for _, n := range []int{1000, 1_000_000} {
				storetest.FillUsage(t, st, have, n, 5000)
				have = n
				for _, p := range pages {
					rows[p] = append(rows[p], timePage(t, hc, base+p))
				}
			}
			var b strings.Builder
			fmt.Fprintf(&b, "\n%s: | page | 1 000 records | 1 000 000 records | ratio |\n", name)
			for _, p := range pages {
				d := rows[p]
				fmt.Fprintf(&b, "| `%s` | %.1f ms | %.1f ms | %.1f× |\n", p, ms(d[0]), ms(d[1]), ms(d[1])/ms(d[0]))
				if d[1] > 300*time.Millisecond {
					t.Errorf("%s %s with 1 M records: %v, want under 300 ms", name, p, d[1])
				}
				if d[1] > 3*d[0] {
					t.Errorf("%s %s with 1 M records: %v, more than 3× the %v with 1 000", name, p, d[1], d[0])
				}
			}
			t.Log(b.String())
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timePage is the median of 21 loads of url, each read to its end.
func timePage(t *testing.T, hc *http.Client, url string) time.Duration {
	var ds []time.Duration
	for range 21 {
		start := time.Now()
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", url, resp.StatusCode)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// benchConsole serves a console on st with a signed-in client.
func benchConsole(t *testing.T, st store.Store) (string, *http.Client) {
	ctx := context.Background()
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err := st.SetAdmin(ctx, store.Admin{Username: testUser, PasswordHash: string(hash), UpdatedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	box, _ := secret.NewBox(strings.Repeat("k", 40))
	svc := &admin.Service{Store: st, Box: box}
	api := admin.NewAPI(svc, admin.APIOptions{JWTSecret: testSecret, PasswordCost: bcrypt.MinCost})
	// The console's clock stands at the records' end, so the trend of the
	// page shows them (the session's idle mark follows the same clock).
	clock := time.Now()
	now := func() time.Time { return storetest.UsageBenchEnd.Add(time.Since(clock)) }
	con := New(Options{API: api, Store: st, Secret: testSecret, Location: time.UTC, Now: now})
	e := &env{t: t, con: con}
	e.srv = newServer(t, con)
	e.hc = newClient(e).hc
	e.login()
	return e.srv.URL, e.hc
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
