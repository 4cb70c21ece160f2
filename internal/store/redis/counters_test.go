package redis

import (
	"math"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/crs-relay/crs/internal/store/redis/redistest"
)

// serverNow reads the Redis server's clock.
func serverNow(t *testing.T, rdb goredis.UniversalClient) time.Time {
	t.Helper()
	now, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// TestLeaseUsesServerClock skews this instance's clock by hours both ways
// and checks that a lease still ends the lease after the Redis server's
// now: the instance clock is never consulted for slots. A counter's
// expiry, an instant on the caller's clock, is by contrast measured from
// the instance's now.
func TestLeaseUsesServerClock(t *testing.T) {
	rdb := redistest.Client(t)
	const lease = 10 * time.Minute
	for _, skew := range []time.Duration{-3 * time.Hour, 3 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			c := openOn(t, rdb).counters
			c.now = func() time.Time { return time.Now().Add(skew) }
			ctx := t.Context()

			before := serverNow(t, rdb)
			ok, err := c.Acquire(ctx, "slot", "h1", 1, lease)
			if err != nil || !ok {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			after := serverNow(t, rdb)
			score, err := rdb.ZScore(ctx, c.slotKey("slot"), "h1").Result()
			if err != nil {
				t.Fatal(err)
			}
			end := time.UnixMilli(int64(score))
			// The server's clock has ms resolution in the score; allow
			// the truncation on each side.
			lo, hi := before.Add(lease).Add(-time.Millisecond), after.Add(lease).Add(time.Millisecond)
			if end.Before(lo) || end.After(hi) {
				t.Errorf("lease ends %v, want within [%v, %v] (server now + %v)", end, lo, hi, lease)
			}
			if ttl := rdb.PTTL(ctx, c.slotKey("slot")).Val(); ttl < lease-time.Second || ttl > lease {
				t.Errorf("slot key lives %v, want about the lease %v", ttl, lease)
			}

			// A window that ends an hour from the instance's (skewed) now
			// lives an hour in Redis.
			if _, err := c.Add(ctx, "window", 1, c.now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if ttl := rdb.PTTL(ctx, c.counterKey("window")).Val(); ttl < time.Hour-time.Second || ttl > time.Hour {
				t.Errorf("counter lives %v, want about 1h", ttl)
			}
		})
	}
}

// TestSlotKeyOutlivesLongestLease: a short lease taken after a long one
// does not shorten the key's life, and a set whose holders all crashed
// vanishes by itself, with no call touching it.
func TestSlotKeyOutlivesLongestLease(t *testing.T) {
	rdb := redistest.Client(t)
	c := openOn(t, rdb).counters
	ctx := t.Context()
	for _, a := range []struct {
		name, holder string
		lease        time.Duration
	}{{"long", "h1", time.Minute}, {"long", "h2", 100 * time.Millisecond}, {"short", "h1", 100 * time.Millisecond}} {
		if ok, err := c.Acquire(ctx, a.name, a.holder, 2, a.lease); err != nil || !ok {
			t.Fatalf("Acquire(%s, %s) = %v, %v", a.name, a.holder, ok, err)
		}
	}
	if ttl := rdb.PTTL(ctx, c.slotKey("long")).Val(); ttl < time.Minute-time.Second {
		t.Errorf("slot key with a 1m lease lives %v", ttl)
	}
	time.Sleep(150 * time.Millisecond)
	if n := rdb.Exists(ctx, c.slotKey("short")).Val(); n != 0 {
		t.Errorf("abandoned slot set still exists after its only lease ended")
	}
	if n, err := c.InUse(ctx, "long"); err != nil || n != 1 {
		t.Errorf("InUse(long) = %d, %v; want 1", n, err)
	}
}

// TestCounterExactBeyondFloat adds past 2^53, where a double loses units:
// spend counters in picodollars get there at $9,007.
func TestCounterExactBeyondFloat(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx := t.Context()
	big := int64(1)<<62 + 1
	if v, err := c.Add(ctx, "spend", big, time.Time{}); err != nil || v != big {
		t.Fatalf("Add = %d, %v; want %d", v, err, big)
	}
	want := big + 2
	if v, err := c.Add(ctx, "spend", 2, time.Time{}); err != nil || v != want {
		t.Fatalf("Add = %d, %v; want %d", v, err, want)
	}
	if v, ok, err := c.Get(ctx, "spend"); err != nil || !ok || v != want {
		t.Fatalf("Get = %d, %v, %v; want %d", v, ok, err, want)
	}
	// Overflow is an error, not a wrapped value.
	if _, err := c.Add(ctx, "spend", math.MaxInt64, time.Time{}); err == nil {
		t.Error("Add past MaxInt64 succeeded")
	}
	if v, _, _ := c.Get(ctx, "spend"); v != want {
		t.Errorf("after a failed Add the counter is %d, want %d", v, want)
	}
}

// TestCounterCreatedExpired: an Add whose expiry has passed answers its
// value and leaves nothing behind, like the in-memory counters.
func TestCounterCreatedExpired(t *testing.T) {
	rdb := redistest.Client(t)
	c := openOn(t, rdb).counters
	ctx := t.Context()
	if v, err := c.Add(ctx, "late", 5, time.Now().Add(-time.Second)); err != nil || v != 5 {
		t.Fatalf("Add = %d, %v; want 5", v, err)
	}
	if _, ok, err := c.Get(ctx, "late"); err != nil || ok {
		t.Errorf("Get after an Add created expired: exists %v, %v", ok, err)
	}
}

func TestAcquireRefusesNonPositiveLease(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	for _, lease := range []time.Duration{0, -time.Second} {
		if _, err := c.Acquire(t.Context(), "slot", "h", 1, lease); err == nil {
			t.Errorf("Acquire with lease %v succeeded", lease)
		}
	}
	if n, err := c.InUse(t.Context(), "slot"); err != nil || n != 0 {
		t.Errorf("InUse = %d, %v; want 0", n, err)
	}
}

// TestSlotAndCounterNamesApart: one name used as a counter and as a slot
// set is two keys, never a WRONGTYPE error.
func TestSlotAndCounterNamesApart(t *testing.T) {
	c := openOn(t, redistest.Client(t)).counters
	ctx := t.Context()
	if _, err := c.Add(ctx, "same", 1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Acquire(ctx, "same", "h", 1, time.Minute); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if v, ok, err := c.Get(ctx, "same"); err != nil || !ok || v != 1 {
		t.Errorf("Get = %d, %v, %v; want 1", v, ok, err)
	}
}
