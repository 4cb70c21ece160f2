// Command loadgen drives streamed Anthropic Messages requests at a relay and
// reports time to first body byte, throughput and errors. It exists to
// compare crs with a bare reverse proxy (bench/bareproxy) under the same
// load, so it measures what a client feels: TTFB is the time until the first
// byte of the response body, not the headers, because a relay that answers
// headers early but holds the first event back still makes the user wait.
//
// Optionally it watches another process (-watch-pid, Linux /proc) and
// reports that process's CPU seconds and resident memory over the run, so
// the cost of the proxy under test is measured over exactly the requests
// this run sent.
//
// Every run is bounded: -duration or -requests ends it, -timeout caps each
// request and -max-time caps the whole run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are the command-line settings of one run.
type options struct {
	url         string
	key         string
	model       string
	concurrency int
	requests    int
	duration    time.Duration
	hold        int
	bodyBytes   int
	timeout     time.Duration
	maxTime     time.Duration
	watchPID    int
	label       string
	samples     bool
	jsonOut     bool
	sessions    int
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "full Messages URL, e.g. http://127.0.0.1:3000/api/v1/messages (required)")
	fs.StringVar(&o.key, "key", "", "credential sent as x-api-key")
	fs.StringVar(&o.model, "model", "claude-sonnet-4-5-20250929", "model named in the request body")
	fs.IntVar(&o.concurrency, "concurrency", 1, "requests in flight at once")
	fs.IntVar(&o.requests, "requests", 0, "stop after this many requests (0: use -duration)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "stop starting requests after this long (when -requests is 0)")
	fs.IntVar(&o.hold, "hold", 0, "open this many streams at once, keep them open until all finish, then stop (overrides the others)")
	fs.IntVar(&o.bodyBytes, "body-bytes", 300, "pad the request body to about this many bytes")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "limit for one request, body included")
	fs.DurationVar(&o.maxTime, "max-time", 5*time.Minute, "hard limit for the whole run")
	fs.IntVar(&o.watchPID, "watch-pid", 0, "report CPU seconds and RSS of this process over the run (Linux)")
	fs.StringVar(&o.label, "label", "", "free text copied into the result, to tell runs apart")
	fs.BoolVar(&o.samples, "samples", false, "include every TTFB sample (microseconds) in the JSON result")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
	fs.IntVar(&o.sessions, "sessions", 0, "send X-Claude-Code-Session-Id, cycling over this many conversations, as Claude Code does (0: none)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.url == "":
		return o, errors.New("-url is required")
	case o.concurrency < 1:
		return o, errors.New("-concurrency must be at least 1")
	case o.requests < 0 || o.hold < 0 || o.bodyBytes < 0 || o.sessions < 0:
		return o, errors.New("-requests, -hold, -body-bytes and -sessions must not be negative")
	case o.requests == 0 && o.hold == 0 && o.duration <= 0:
		return o, errors.New("one of -requests, -duration or -hold must bound the run")
	case o.timeout <= 0 || o.maxTime <= 0:
		return o, errors.New("-timeout and -max-time must be positive")
	}
	if o.hold > 0 {
		o.concurrency = o.hold
		o.requests = o.hold
	}
	return o, nil
}

// Result is what one run reports. Durations are in milliseconds so that the
// JSON reads directly; CPU and memory fields are present only with
// -watch-pid.
type Result struct {
	Label       string         `json:"label,omitempty"`
	Concurrency int            `json:"concurrency"`
	Hold        int            `json:"hold,omitempty"`
	BodyBytes   int            `json:"body_bytes"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Errors      int            `json:"errors"`
	ErrorKinds  map[string]int `json:"error_kinds,omitempty"`
	WallSeconds float64        `json:"wall_seconds"`
	ReqPerSec   float64        `json:"req_per_sec"`
	BytesIn     int64          `json:"bytes_in"`
	TTFBp50ms   float64        `json:"ttfb_p50_ms"`
	TTFBp90ms   float64        `json:"ttfb_p90_ms"`
	TTFBp99ms   float64        `json:"ttfb_p99_ms"`
	TTFBmaxms   float64        `json:"ttfb_max_ms"`
	Totalp50ms  float64        `json:"total_p50_ms"`
	Totalp99ms  float64        `json:"total_p99_ms"`
	// TTFBSamplesUS holds every successful request's TTFB in microseconds
	// (with -samples), so runs can be pooled before taking percentiles.
	TTFBSamplesUS []int64 `json:"ttfb_samples_us,omitempty"`

	WatchPID          int     `json:"watch_pid,omitempty"`
	CPUSeconds        float64 `json:"cpu_seconds,omitempty"`
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000,omitempty"`
	RSSStartKiB       int64   `json:"rss_start_kib,omitempty"`
	RSSPeakKiB        int64   `json:"rss_peak_kib,omitempty"`
}

// sample is the measurement of one request.
type sample struct {
	ttfb, total time.Duration
	bytes       int64
	err         string // empty on success; otherwise a short error kind
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()

	body := requestBody(o.model, o.bodyBytes)
	client := &http.Client{Transport: newTransport(o.concurrency)}
	defer client.CloseIdleConnections()

	var watch *watcher
	if o.watchPID > 0 {
		if watch, err = startWatch(ctx, o.watchPID); err != nil {
			return err
		}
	}

	samples := drive(ctx, o, func(ctx context.Context) sample {
		return doRequest(ctx, client, o, body)
	})

	res := summarize(o, samples.list, samples.wall)
	if watch != nil {
		ws := watch.stop()
		res.WatchPID = o.watchPID
		res.CPUSeconds = ws.cpuSeconds
		if res.Requests > 0 {
			res.CPUSecondsPer1000 = ws.cpuSeconds * 1000 / float64(res.Requests)
		}
		res.RSSStartKiB = ws.rssStartKiB
		res.RSSPeakKiB = ws.rssPeakKiB
	}
	if o.jsonOut {
		enc := json.NewEncoder(out)
		return enc.Encode(res)
	}
	printText(out, res)
	if res.OK == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// newTransport is tuned so the generator is never the bottleneck: one idle
// connection per worker (no reconnects between requests), no HTTP/2, no
// transparent gzip (the byte counts and TTFB are those of the raw stream).
func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      16 << 10,
	}
}

// requestBody is a streamed Messages request whose user text pads the whole
// body to about size bytes (never below the JSON skeleton).
func requestBody(model string, size int) []byte {
	head := fmt.Sprintf(`{"model":%q,"max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"`, model)
	const tail = `"}]}`
	text := "Say pong."
	if pad := size - len(head) - len(tail) - len(text); pad > 0 {
		text += " " + strings.Repeat("lorem ipsum ", pad/12+1)[:pad-1]
	}
	return []byte(head + text + tail)
}

// driven is the outcome of drive: every sample and the wall time from the
// first request started to the last one finished.
type driven struct {
	list []sample
	wall time.Duration
}

// drive runs one request function with o.concurrency workers until the
// request count or duration is reached (or, with -hold, until every held
// stream has finished). Workers stop starting requests when ctx ends.
func drive(ctx context.Context, o options, one func(context.Context) sample) driven {
	var (
		started  atomic.Int64
		mu       sync.Mutex
		list     = make([]sample, 0, 1024)
		wg       sync.WaitGroup
		deadline time.Time
	)
	if o.requests == 0 {
		deadline = time.Now().Add(o.duration)
	}
	// With -hold every worker sends exactly one request, and all of them
	// wait at a gate so the streams open together.
	gate := make(chan struct{})
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			local := make([]sample, 0, 64)
			for ctx.Err() == nil {
				if o.requests > 0 {
					if started.Add(1) > int64(o.requests) {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				local = append(local, one(ctx))
			}
			mu.Lock()
			list = append(list, local...)
			mu.Unlock()
		}()
	}
	begin := time.Now()
	close(gate)
	wg.Wait()
	return driven{list: list, wall: time.Since(begin)}
}

// sessionSeq picks the conversation of the next request.
var sessionSeq atomic.Uint64

// doRequest sends one streamed request and reads the whole response. A
// response is a success when it is a 200 whose stream ends with
// message_stop; anything else counts as an error of a named kind.
func doRequest(ctx context.Context, client *http.Client, o options, body []byte) sample {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return sample{err: "request"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	if o.key != "" {
		req.Header.Set("X-Api-Key", o.key)
	}
	if o.sessions > 0 {
		n := sessionSeq.Add(1) % uint64(o.sessions)
		req.Header.Set("X-Claude-Code-Session-Id", fmt.Sprintf("00000000-0000-4000-8000-%012d", n))
	}

	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return sample{err: errKind(err), total: time.Since(start)}
	}
	defer resp.Body.Close()

	var (
		buf   [32 << 10]byte
		s     sample
		tail  []byte // last bytes of the stream, to find message_stop
		first = true
	)
	for {
		n, rerr := resp.Body.Read(buf[:])
		if n > 0 {
			if first {
				s.ttfb = time.Since(start)
				first = false
			}
			s.bytes += int64(n)
			tail = append(tail, buf[:n]...)
			if len(tail) > 256 {
				tail = append(tail[:0], tail[len(tail)-256:]...)
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				s.err = "body: " + errKind(rerr)
			}
			break
		}
	}
	s.total = time.Since(start)
	switch {
	case s.err != "":
	case resp.StatusCode != http.StatusOK:
		s.err = fmt.Sprintf("status %d", resp.StatusCode)
	case !bytes.Contains(tail, []byte("message_stop")):
		s.err = "stream ended without message_stop"
	}
	return s
}

// errKind shortens a transport error to a kind worth counting, so the
// report groups thousands of identical failures into one line.
func errKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EMFILE):
		return "too many open files"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// summarize turns the samples into a Result. Percentiles of TTFB and total
// time use successful requests only; a failed request has no meaningful
// first byte.
func summarize(o options, list []sample, wall time.Duration) Result {
	r := Result{
		Label:       o.label,
		Concurrency: o.concurrency,
		Hold:        o.hold,
		BodyBytes:   len(requestBody(o.model, o.bodyBytes)),
		Requests:    len(list),
		WallSeconds: wall.Seconds(),
	}
	ttfb := make([]time.Duration, 0, len(list))
	total := make([]time.Duration, 0, len(list))
	for _, s := range list {
		r.BytesIn += s.bytes
		if s.err != "" {
			r.Errors++
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int{}
			}
			r.ErrorKinds[s.err]++
			continue
		}
		r.OK++
		ttfb = append(ttfb, s.ttfb)
		total = append(total, s.total)
	}
	if wall > 0 {
		r.ReqPerSec = float64(r.OK) / wall.Seconds()
	}
	slices.Sort(ttfb)
	slices.Sort(total)
	r.TTFBp50ms = ms(percentile(ttfb, 50))
	r.TTFBp90ms = ms(percentile(ttfb, 90))
	r.TTFBp99ms = ms(percentile(ttfb, 99))
	r.TTFBmaxms = ms(percentile(ttfb, 100))
	r.Totalp50ms = ms(percentile(total, 50))
	r.Totalp99ms = ms(percentile(total, 99))
	if o.samples {
		r.TTFBSamplesUS = make([]int64, len(ttfb))
		for i, d := range ttfb {
			r.TTFBSamplesUS[i] = d.Microseconds()
		}
	}
	return r
}

// percentile is the nearest-rank percentile of sorted values (0 when empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printText(w io.Writer, r Result) {
	if r.Label != "" {
		fmt.Fprintf(w, "%s\n", r.Label)
	}
	fmt.Fprintf(w, "requests %d (ok %d, errors %d) in %.2fs: %.1f req/s, %d bytes in\n",
		r.Requests, r.OK, r.Errors, r.WallSeconds, r.ReqPerSec, r.BytesIn)
	fmt.Fprintf(w, "TTFB p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", r.TTFBp50ms, r.TTFBp90ms, r.TTFBp99ms, r.TTFBmaxms)
	fmt.Fprintf(w, "total p50 %.3fms  p99 %.3fms\n", r.Totalp50ms, r.Totalp99ms)
	for k, n := range r.ErrorKinds {
		fmt.Fprintf(w, "  error %q × %d\n", k, n)
	}
	if r.WatchPID > 0 {
		fmt.Fprintf(w, "pid %d: cpu %.2fs (%.3fs per 1000 requests), RSS %d KiB at start, peak %d KiB\n",
			r.WatchPID, r.CPUSeconds, r.CPUSecondsPer1000, r.RSSStartKiB, r.RSSPeakKiB)
	}
}
