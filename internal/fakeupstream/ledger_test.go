package fakeupstream

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestLedgerFaultOrder checks that queued faults are taken oldest first, the
// default applies once the queue is empty, every take is counted, and a
// reset drops the queue and count but keeps the default.
func TestLedgerFaultOrder(t *testing.T) {
	var l ledger[Fault]
	l.SetDefault(Fault{Status: 529})
	l.Push(Fault{Status: 500}, Fault{Status: 429})
	for i, want := range []int{500, 429, 529, 529} {
		if got := l.next().Status; got != want {
			t.Fatalf("take %d: status %d, want %d", i, got, want)
		}
	}
	if got := l.counted(); got != 4 {
		t.Fatalf("counted = %d, want 4", got)
	}
	l.Push(Fault{Status: 500})
	l.resetLedger()
	if got := l.counted(); got != 0 {
		t.Fatalf("counted after reset = %d, want 0", got)
	}
	if got := l.next().Status; got != 529 {
		t.Fatalf("after reset: status %d, want the default 529", got)
	}
}

// TestLedgerClonesFaults checks that a header map changed after Push or
// SetDefault does not reach the fault the fake will apply.
func TestLedgerClonesFaults(t *testing.T) {
	var l ledger[GeminiFault]
	h := http.Header{"Retry-After": {"1"}}
	l.Push(GeminiFault{Status: 429, Header: h})
	l.SetDefault(GeminiFault{Status: 503, Header: h})
	h.Set("Retry-After", "99")
	if got := l.next().Header.Get("Retry-After"); got != "1" {
		t.Fatalf("queued fault header = %q, want 1", got)
	}
	if got := l.next().Header.Get("Retry-After"); got != "1" {
		t.Fatalf("default fault header = %q, want 1", got)
	}
}

// TestLedgerRecords checks that a recorded request survives changes to the
// original and to the copy Requests returns, and that its body is cut.
func TestLedgerRecords(t *testing.T) {
	var l ledger[OpenAIFault]
	r := httptest.NewRequest(http.MethodPost, "/v1/responses?x=1", nil)
	r.Header.Set("Authorization", "Bearer k")
	body := bytes.Repeat([]byte("a"), maxRecordedBody+10)
	at := time.Unix(100, 0)
	l.record(r, body, at)
	r.Header.Set("Authorization", "changed")
	body[0] = 'b'

	got := l.Requests()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	rec := got[0]
	if rec.Method != http.MethodPost || rec.Path != "/v1/responses" || rec.RawQuery != "x=1" || !rec.Time.Equal(at) {
		t.Fatalf("recorded %+v", rec)
	}
	if rec.Header.Get("Authorization") != "Bearer k" || len(rec.Body) != maxRecordedBody || rec.Body[0] != 'a' {
		t.Fatalf("record changed with the request: auth %q, body %d bytes starting %q",
			rec.Header.Get("Authorization"), len(rec.Body), rec.Body[0])
	}
	rec.Header.Set("Authorization", "x")
	rec.Body[0] = 'x'
	again := l.Requests()[0]
	if again.Header.Get("Authorization") != "Bearer k" || again.Body[0] != 'a' {
		t.Fatal("changing the copy Requests returned changed the record")
	}
	l.resetLedger()
	if n := len(l.Requests()); n != 0 {
		t.Fatalf("%d requests after reset, want 0", n)
	}
}

// TestLedgerInFlight checks the high-water mark under concurrent entries.
func TestLedgerInFlight(t *testing.T) {
	var l ledger[Fault]
	const n = 8
	var entered, release sync.WaitGroup
	entered.Add(n)
	release.Add(1)
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			leave := l.enter()
			entered.Done()
			release.Wait()
			leave()
		})
	}
	entered.Wait()
	if got := l.MaxInFlight(); got != n {
		t.Fatalf("MaxInFlight = %d, want %d", got, n)
	}
	release.Done()
	done.Wait()
	if got := l.MaxInFlight(); got != n {
		t.Fatalf("MaxInFlight after leaving = %d, want %d", got, n)
	}
	l.ResetMaxInFlight()
	if got := l.MaxInFlight(); got != 0 {
		t.Fatalf("MaxInFlight after reset = %d, want 0", got)
	}
}
