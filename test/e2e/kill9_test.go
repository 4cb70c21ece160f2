package e2e

import (
	"bufio"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

// TestKill9KeepsCompletedUsage: kill -9 in the middle of many concurrent
// streams loses no usage record of a response the client saw complete
// (message_stop arrived). After a restart (which replays the spool) the
// records are a superset of the completed responses and a subset of the
// responses that started, each exactly once, and the usage totals equal
// the sum of the records.
func TestKill9KeepsCompletedUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		killAfter int // completed responses before the kill
	}{
		{"as the first responses complete", 1},
		{"mid run", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kill9Run(t, 40, 8, tc.killAfter)
		})
	}
}

// streamOutcome is what one client saw of one streaming request.
type streamOutcome struct {
	requestID string // x-request-id, "" if no response headers arrived
	complete  bool   // message_stop was received
	err       error  // why the stream ended early, if it did
}

func kill9Run(t *testing.T, total, parallel, killAfter int) {
	// Streams last about 0.5 s (10 deltas 50 ms apart), so with 8 in
	// flight there is always a wave mid-stream when the kill comes.
	fake := fakeupstream.StartAnthropic(t, fakeupstream.Options{Deltas: 10, DeltaDelay: 50 * time.Millisecond})
	dir := t.TempDir()
	addAccount(t, dir, fake, "a", 50)
	_, key := createKey(t, dir, "k")
	srv := startCRS(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		killed    atomic.Bool
		completed atomic.Int32
		dispatch  = make(chan int)
		reached   = make(chan struct{})
		once      sync.Once
		outcomes  = make([]streamOutcome, total)
		started   = make([]bool, total)
		wg        sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: parallel, MaxIdleConnsPerHost: parallel}}
	defer client.CloseIdleConnections()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range dispatch {
				started[i] = true
				outcomes[i] = postStream(ctx, client, srv.url, key)
				if outcomes[i].complete && completed.Add(1) == int32(killAfter) {
					once.Do(func() { close(reached) })
				}
			}
		}()
	}
	go func() {
		defer close(dispatch)
		for i := range total {
			if killed.Load() {
				return
			}
			select {
			case dispatch <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatalf("only %d responses completed before the deadline", completed.Load())
	}
	killed.Store(true)
	srv.signal(syscall.SIGKILL)
	killedAt := completed.Load()
	wg.Wait()
	if st := srv.waitExit(10 * time.Second); st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crs after SIGKILL: %v", st)
	}

	seen := map[string]bool{} // request ids the clients got headers for
	var nStarted, nComplete, nCut, nNoHeaders int
	for i, o := range outcomes {
		if !started[i] {
			continue
		}
		nStarted++
		if o.requestID == "" {
			nNoHeaders++
		} else {
			if seen[o.requestID] {
				t.Fatalf("request id %s given twice", o.requestID)
			}
			seen[o.requestID] = true
		}
		if o.complete {
			nComplete++
		} else {
			nCut++
		}
	}
	t.Logf("killed with %d complete; in the end %d started, %d complete, %d cut by the kill", killedAt, nStarted, nComplete, nCut)
	if nCut == 0 {
		t.Fatal("no request was in flight at the kill; the test proved nothing")
	}

	// Restart on the same DATA_DIR: the spool is replayed before it listens.
	srv2 := startCRS(t, dir)
	if strings.Contains(srv2.stderr.String(), "replayed spooled usage records") {
		t.Logf("restart: %s", lastLine(srv2.stderr.String(), "replayed"))
	}
	u := usage(t, dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListUsage(ctx, store.UsageFilter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A record normally belongs to a response whose headers the client
	// read. A client starved of CPU may still not have read them when the
	// kill resets the connection, so records of unseen ids are allowed, but
	// no more of them than requests that got no headers.
	recorded := map[string]int{}
	unseen := 0
	for _, r := range recs {
		recorded[r.RequestID]++
		if !seen[r.RequestID] {
			unseen++
			t.Logf("record for request %s whose headers no client read: %+v", r.RequestID, r)
		}
	}
	if unseen > nNoHeaders {
		t.Errorf("%d records of request ids no client saw, but only %d requests got no headers", unseen, nNoHeaders)
	}
	for id, n := range recorded {
		if n != 1 {
			t.Errorf("request %s recorded %d times", id, n)
		}
	}
	for i, o := range outcomes {
		if o.complete && recorded[o.requestID] == 0 {
			t.Errorf("request %d (%s) completed at the client but has no usage record", i, o.requestID)
		}
	}
	n := int64(len(recs))
	if n < int64(nComplete) || n > int64(nStarted) {
		t.Errorf("records = %d, want between %d complete and %d started", n, nComplete, nStarted)
	}
	if u.TotalRequests() != n || len(u.Keys) != 1 || u.Keys[0].Tokens() != times(fakeupstream.DefaultUsage(), n) {
		t.Errorf("crs usage = %+v, want %d requests of %+v (the records' sum)", u.Keys, n, fakeupstream.DefaultUsage())
	}
	if t.Failed() {
		for i, o := range outcomes {
			t.Logf("request %d: started %v, %+v", i, started[i], o)
		}
		t.Logf("crs log before the kill:\n%s", srv.stderr)
	}
	t.Logf("after restart: %d records (%d complete at the client, %d started)", n, nComplete, nStarted)
}

// postStream sends one streaming Messages request with raw HTTP and reads
// the SSE text until the end or an error.
func postStream(ctx context.Context, c *http.Client, base, key string) streamOutcome {
	body := `{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/messages", strings.NewReader(body))
	if err != nil {
		return streamOutcome{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Api-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return streamOutcome{err: err}
	}
	defer resp.Body.Close()
	o := streamOutcome{requestID: resp.Header.Get("X-Request-Id")}
	if resp.StatusCode != http.StatusOK {
		return o
	}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "message_stop" && strings.Contains(line, `"type":"message_stop"`):
			o.complete = true
		}
	}
	o.err = sc.Err()
	return o
}

func lastLine(s, containing string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], containing) {
			return lines[i]
		}
	}
	return ""
}
