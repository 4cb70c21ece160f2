package sqlite

import (
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestPolicyEncoding checks that the zero policy is stored as the column
// default, and that empty lists and maps written by other means (the
// sqlite3 shell, an import) read back as none, the zero value's form.
func TestPolicyEncoding(t *testing.T) {
	enc, err := encodePolicy(store.KeyPolicy{Permissions: []store.Platform{}, ServiceRates: map[store.Platform]float64{}})
	if err != nil || enc != `{}` {
		t.Errorf("encodePolicy of an empty policy = %s, %v; want {}", enc, err)
	}
	got, err := decodePolicy(`{"permissions":[],"models_allow":[],"models_deny":[],"service_rates":{},"concurrency":2}`)
	if err != nil || !reflect.DeepEqual(got, store.KeyPolicy{Concurrency: 2}) {
		t.Errorf("decodePolicy with empty lists = %+v, %v; want only concurrency 2", got, err)
	}
	if _, err := decodePolicy(`{"concurrency":`); err == nil {
		t.Error("a truncated policy decoded without error")
	}
	if _, err := encodePolicy(store.KeyPolicy{ServiceRates: map[store.Platform]float64{"x": nan()}}); err == nil {
		t.Error("a NaN service rate encoded without error")
	}
}

// nan returns a NaN without a constant expression the compiler rejects.
func nan() float64 {
	zero := 0.0
	return zero / zero
}

// TestTwoStoresActivateKey activates one key from two Stores on one file
// at once, as two instances would on a new key's first requests: every
// caller, in either process, must get the same first activation.
func TestTwoStoresActivateKey(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "crs.db")
	a := openAt(t, path, Options{})
	b := openAt(t, path, Options{})
	for r := range 5 {
		id := store.KeyID(fmt.Sprint("k", r))
		must(t, a.CreateKey(ctx, store.Key{ID: id, Name: "n", Hash: string(id), Hint: "abcd"}))
		const callers = 8
		got := make([]time.Time, callers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				var err error
				got[i], err = s.ActivateKey(ctx, id, time.UnixMilli(int64(1000+i)))
				if err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range got {
			if !got[i].Equal(got[0]) {
				t.Errorf("round %d: caller %d got %v, caller 0 got %v", r, i, got[i], got[0])
			}
		}
		if k, err := b.GetKey(ctx, id); err != nil || k.ActivatedAt == nil || !k.ActivatedAt.Equal(got[0]) {
			t.Errorf("round %d: stored %+v, %v; callers got %v", r, k.ActivatedAt, err, got[0])
		}
	}
}
