package throttle

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestAllowFailSucceedAndWindow(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	th := New(3, time.Minute, clk.Now)
	for i := range 3 {
		if ok, _ := th.Allow("192.0.2.7"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		th.Fail("192.0.2.7")
		clk.Advance(10 * time.Second)
	}
	ok, wait := th.Allow("192.0.2.7")
	if ok || wait != 30*time.Second {
		t.Fatalf("after 3 failures: ok %v wait %v, want refused for 30s (the oldest leaves the window)", ok, wait)
	}
	if ok, _ := th.Allow("192.0.2.8"); !ok {
		t.Fatal("another address was refused")
	}
	clk.Advance(wait)
	if ok, _ := th.Allow("192.0.2.7"); !ok {
		t.Fatal("still refused once the oldest failure left the window")
	}
	th.Fail("192.0.2.7")
	th.Succeed("192.0.2.7")
	if ok, _ := th.Allow("192.0.2.7"); !ok {
		t.Fatal("a success did not clear the failures")
	}
}

func TestGroupsIPv6AndStaysBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	const max = 5
	window := 15 * time.Minute
	th := New(max, window, clk.Now)
	th.maxClients = 3

	// Different addresses in one /64 share a count.
	for i := range max {
		th.Fail("2001:db8:1:2::" + strconv.Itoa(i+1))
	}
	if ok, _ := th.Allow("2001:db8:1:2:ffff::1"); ok {
		t.Fatal("another address in the same /64 was allowed")
	}
	if ok, _ := th.Allow("2001:db8:1:3::1"); !ok {
		t.Fatal("another /64 was refused")
	}
	// IPv4-mapped IPv6 counts as the IPv4 address.
	clk.Advance(time.Second)
	th.Fail("::ffff:192.0.2.1")
	if got := len(th.failures["192.0.2.1"]); got != 1 {
		t.Fatalf("mapped address not unmapped: %v", th.failures)
	}

	// The map never grows past maxClients; the least recently failing
	// client is dropped first, and expired entries before anyone.
	clk.Advance(time.Second)
	th.Fail("198.51.100.1")
	clk.Advance(time.Second)
	th.Fail("198.51.100.2")
	if len(th.failures) != 3 {
		t.Fatalf("map size %d, want 3", len(th.failures))
	}
	if _, ok := th.failures["2001:db8:1:2::/64"]; ok {
		t.Fatal("oldest client not evicted")
	}
	clk.Advance(window)
	th.Fail("198.51.100.3")
	if len(th.failures) != 1 {
		t.Fatalf("expired clients kept: %v", th.failures)
	}
}
