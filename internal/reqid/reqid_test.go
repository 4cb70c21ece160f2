package reqid

import (
	"context"
	"testing"
	"time"
)

func TestIDsAreUniqueAndSortByTime(t *testing.T) {
	a := New()
	time.Sleep(2 * time.Millisecond)
	b := New()
	if len(a) != len("req_")+28 || a == b || !(a < b) {
		t.Fatalf("ids %q, %q: want distinct, fixed length, sorted by time", a, b)
	}
	seen := map[string]bool{}
	for range 10000 {
		id := New()
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	ctx := With(context.Background(), "req_x")
	if From(ctx) != "req_x" || From(context.Background()) == "" {
		t.Fatal("context round trip")
	}
}
