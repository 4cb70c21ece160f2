package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/tidwall/gjson"
)

// runJSON runs loadgen with args plus -json and decodes its result.
func runJSON(t *testing.T, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, append(args, "-json"), &out); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("decoding %q: %v", out.String(), err)
	}
	return r
}

func TestRunMeasuresStreams(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 10, APIKeys: []string{"sk-good"}})
	url := fake.URL() + "/v1/messages"

	tests := []struct {
		name       string
		key        string
		fault      *fakeupstream.Fault
		wantOK     int
		wantErrors map[string]int
	}{
		{name: "healthy", key: "sk-good", wantOK: 24},
		{name: "wrong key", key: "sk-bad", wantErrors: map[string]int{"status 401": 24}},
		{name: "cut mid-stream", key: "sk-good", fault: &fakeupstream.Fault{CutAfterEvents: 4},
			wantErrors: map[string]int{"body: unexpected EOF": 24}},
		{name: "error event instead of message_stop", key: "sk-good", fault: &fakeupstream.Fault{ErrorEventAfter: 4},
			wantErrors: map[string]int{"stream ended without message_stop": 24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake.Reset()
			if tt.fault != nil {
				fake.SetDefault(*tt.fault)
				defer fake.SetDefault(fakeupstream.Fault{})
			}
			r := runJSON(t, "-url", url, "-key", tt.key, "-concurrency", "4", "-requests", "24",
				"-samples", "-watch-pid", strconv.Itoa(os.Getpid()), "-label", tt.name)

			if r.Requests != 24 || r.OK != tt.wantOK || r.Errors != 24-tt.wantOK {
				t.Fatalf("requests/ok/errors = %d/%d/%d, want 24/%d/%d (kinds %v)",
					r.Requests, r.OK, r.Errors, tt.wantOK, 24-tt.wantOK, r.ErrorKinds)
			}
			for kind, n := range tt.wantErrors {
				if r.ErrorKinds[kind] != n {
					t.Errorf("error kinds = %v, want %q × %d", r.ErrorKinds, kind, n)
				}
			}
			if got := len(fake.Requests()); got != 24 {
				t.Errorf("fake saw %d requests, want 24", got)
			}
			if r.Label != tt.name || r.WatchPID != os.Getpid() || r.RSSPeakKiB <= 0 || r.RSSPeakKiB < r.RSSStartKiB {
				t.Errorf("label %q, watch pid %d, RSS start %d peak %d", r.Label, r.WatchPID, r.RSSStartKiB, r.RSSPeakKiB)
			}
			if tt.wantOK == 0 {
				return
			}
			if len(r.TTFBSamplesUS) != tt.wantOK {
				t.Errorf("%d TTFB samples, want %d", len(r.TTFBSamplesUS), tt.wantOK)
			}
			if !(r.TTFBp50ms > 0 && r.TTFBp50ms <= r.TTFBp99ms && r.TTFBp99ms <= r.TTFBmaxms && r.TTFBp50ms <= r.Totalp50ms) {
				t.Errorf("TTFB p50 %v p99 %v max %v, total p50 %v: not ordered", r.TTFBp50ms, r.TTFBp99ms, r.TTFBmaxms, r.Totalp50ms)
			}
			if r.ReqPerSec <= 0 || r.BytesIn < int64(24*len(fakeupstream.ReplyText(10))) {
				t.Errorf("req/s %v, bytes in %d", r.ReqPerSec, r.BytesIn)
			}
		})
	}
}

// TestRunSendsWhatTheAPIExpects checks the request itself: a valid streamed
// Messages body of about -body-bytes, with the headers the real API needs.
func TestRunSendsWhatTheAPIExpects(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	runJSON(t, "-url", fake.URL()+"/v1/messages", "-key", "sk-x", "-requests", "1", "-body-bytes", "65536")

	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("fake saw %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if n := len(got.Body); n < 65536-16 || n > 65536+16 {
		t.Errorf("body is %d bytes, want about 65536", n)
	}
	if !gjson.GetBytes(got.Body, "stream").Bool() || gjson.GetBytes(got.Body, "messages.0.role").Str != "user" {
		t.Errorf("body is not a streamed Messages request: %.200s", got.Body)
	}
	if got.Header.Get("X-Api-Key") != "sk-x" || got.Header.Get("Anthropic-Version") == "" {
		t.Errorf("headers %v", got.Header)
	}
	if ae := got.Header.Get("Accept-Encoding"); ae != "" {
		t.Errorf("Accept-Encoding %q: transparent compression would skew byte counts", ae)
	}
}

// TestHoldOpensStreamsTogether: with -hold N all N streams are open at the
// same time, so the run takes about one stream's time, not N of them.
func TestHoldOpensStreamsTogether(t *testing.T) {
	const streams, deltas, delay = 20, 5, 20 * time.Millisecond
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: deltas, DeltaDelay: delay})
	r := runJSON(t, "-url", fake.URL()+"/v1/messages", "-key", "k", "-hold", strconv.Itoa(streams),
		"-duration", "0", "-requests", "1")

	if r.OK != streams || r.Hold != streams || r.Concurrency != streams {
		t.Fatalf("ok %d hold %d concurrency %d, want %d each", r.OK, r.Hold, r.Concurrency, streams)
	}
	oneStream := time.Duration(deltas-1) * delay
	if wall := time.Duration(r.WallSeconds * float64(time.Second)); wall >= streams*oneStream/2 {
		t.Errorf("%d held streams took %v; one takes %v, so they did not overlap", streams, wall, oneStream)
	}
}

func TestParseFlagsRejectsUnboundedOrInvalidRuns(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "-url"},
		{[]string{"-url", "http://x", "-duration", "0"}, "bound"},
		{[]string{"-url", "http://x", "-concurrency", "0"}, "-concurrency"},
		{[]string{"-url", "http://x", "-timeout", "0"}, "-timeout"},
		{[]string{"-url", "http://x", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) = %v, want an error about %s", tt.args, err, tt.want)
		}
	}
}

func TestRequestBodySize(t *testing.T) {
	for _, size := range []int{0, 100, 300, 4096, 65536} {
		b := requestBody("m", size)
		if !json.Valid(b) {
			t.Fatalf("size %d: invalid JSON %s", size, b)
		}
		if size >= 200 && len(b) != size {
			t.Errorf("size %d: body is %d bytes", size, len(b))
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(hundred...), 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
		}
	}
}

func TestParseProc(t *testing.T) {
	// utime 250 + stime 50 ticks = 3 s; the command name holds ") " to make
	// sure fields are counted from the last parenthesis.
	stat := "1234 (we ird) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 1000000 500"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("short stat line accepted")
	}
	rss, err := parseVmRSS([]byte("Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t  4321 kB\nThreads: 3\n"))
	if err != nil || rss != 4321 {
		t.Errorf("parseVmRSS = %v, %v; want 4321", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}

	// And the real thing: this process is running, so it has used some CPU
	// and memory.
	if cpu, err := cpuSeconds(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("cpuSeconds(self) = %v, %v", cpu, err)
	}
	if rss, err := rssKiB(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("rssKiB(self) = %v, %v", rss, err)
	}
}

// TestSessionsCycleConversations: -sessions N sends Claude Code's session
// header over exactly N conversations; without it, none is sent.
func TestSessionsCycleConversations(t *testing.T) {
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 1})
	url := fake.URL() + "/v1/messages"
	runJSON(t, "-url", url, "-concurrency", "3", "-requests", "30", "-sessions", "4")
	seen := map[string]int{}
	for _, r := range fake.Requests() {
		seen[r.Header.Get("X-Claude-Code-Session-Id")]++
	}
	if len(seen) != 4 || seen[""] != 0 {
		t.Errorf("sessions seen %v, want 4 distinct, each request with one", seen)
	}
	fake.Reset()
	runJSON(t, "-url", url, "-requests", "3")
	for _, r := range fake.Requests() {
		if v := r.Header.Get("X-Claude-Code-Session-Id"); v != "" {
			t.Errorf("session %q sent without -sessions", v)
		}
	}
}
