package storetest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// fullPolicy returns a policy with every field set, each to a value no
// other field has, so two fields stored in each other's place fail the
// comparison. Durations are off the millisecond, so a backend that rounds
// them fails too.
func fullPolicy() store.KeyPolicy {
	queue := true
	return store.KeyPolicy{
		Description:     "team \"alpha\" — 中文",
		Permissions:     []store.Platform{store.PlatformClaude, store.PlatformGemini},
		ModelsAllow:     []string{"claude-sonnet-4-5", "claude-opus-4-1"},
		ModelsDeny:      []string{"claude-opus-4-1-20250805"},
		Concurrency:     3,
		Queue:           &queue,
		RateWindow:      5*time.Hour + 7*time.Nanosecond,
		RateRequests:    1_000,
		RateTokens:      2_000_000,
		RateCost:        5_000_000_000_001,
		DailyCost:       7_000_000_000_002,
		TotalCost:       1<<62 + 3,
		WeeklyCost:      9_000_000_000_004,
		DailyOpusCost:   11_000_000_000_005,
		WeeklyResetDay:  4,
		WeeklyResetHour: 23,
		ActivateFor:     30*24*time.Hour + time.Microsecond,
		Account:         "group:grp_01",
		BindingFallback: true,
		ServiceRates:    map[store.Platform]float64{store.PlatformClaude: 1.5, store.PlatformOpenAI: 0.25},
	}
}

// testKeyPolicyRoundTrip round-trips policies and the activation time
// through CreateKey and every read. The full policy sets every field (a
// field added to store.KeyPolicy later must be added to fullPolicy, or
// this test fails); the others check the forms the zero values take: a
// Queue of false is not "unset", a rate of 0 is not "missing", and empty
// lists and maps equal none.
func testKeyPolicyRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := fullPolicy()
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullPolicy leaves %s unset", v.Type().Field(i).Name)
		}
	}

	noQueue := false
	withFull := newKey("pol-full", at(0))
	withFull.Policy = full
	withFull.Tags = []string{"t"}
	withFull.Clients = []string{"claude_code"}
	withFull.ActivatedAt = ptr(at(time.Hour + 9*time.Millisecond).In(Zone()))
	zeros := newKey("pol-zeros", at(time.Second))
	zeros.Policy = store.KeyPolicy{
		Queue:        &noQueue,
		ServiceRates: map[store.Platform]float64{store.PlatformDroid: 0},
	}
	empty := newKey("pol-empty", at(2*time.Second))
	empty.Policy = store.KeyPolicy{
		Permissions:  []store.Platform{},
		ModelsAllow:  []string{},
		ModelsDeny:   []string{},
		ServiceRates: map[store.Platform]float64{},
	}
	keys := []store.Key{withFull, zeros, empty, newKey("pol-none", at(3*time.Second))}
	for _, k := range keys {
		must(t, s.CreateKey(ctx, k))
	}
	listed, err := s.ListKeys(ctx, false)
	must(t, err)
	if len(listed) != len(keys) {
		t.Fatalf("ListKeys returned %d keys, want %d", len(listed), len(keys))
	}
	for i, k := range keys {
		got, err := s.GetKey(ctx, k.ID)
		must(t, err)
		sameKey(t, string(k.ID)+": GetKey", got, k)
		got, err = s.KeyByHash(ctx, k.Hash)
		must(t, err)
		sameKey(t, string(k.ID)+": KeyByHash", got, k)
		sameKey(t, string(k.ID)+": ListKeys", listed[i], k)
	}
	got, err := s.GetKey(ctx, zeros.ID)
	must(t, err)
	if q := got.Policy.Queue; q == nil || *q {
		t.Errorf("Queue set to false reads back as %v", q)
	}
	if r, ok := got.Policy.ServiceRates[store.PlatformDroid]; !ok || r != 0 {
		t.Errorf("a service rate of 0 reads back as %v, %v", r, ok)
	}
}

// testUpdateKeyPolicy changes the policy alone (each change must move
// ChangeVersion: every instance enforces the policy from its cache), and
// checks that UpdateKey never moves ActivatedAt: an edit built from a key
// read before its first use must not take the activation back, and an
// edit cannot activate a key either.
func testUpdateKeyPolicy(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("upol", at(0))
	k.Policy = store.KeyPolicy{Concurrency: 1, ModelsDeny: []string{"x"}}
	must(t, s.CreateKey(ctx, k))
	stale, err := s.GetKey(ctx, k.ID)
	must(t, err)
	activated := at(time.Hour + 5*time.Millisecond)
	_, err = s.ActivateKey(ctx, k.ID, activated)
	must(t, err)

	want := k
	want.ActivatedAt = &activated
	for i, p := range []store.KeyPolicy{fullPolicy(), {}, {Description: "only this"}} {
		v0, err := s.ChangeVersion(ctx)
		must(t, err)
		upd := stale
		upd.Policy = p
		if i == 1 {
			upd.ActivatedAt = ptr(at(99 * time.Hour)) // must be ignored
		}
		must(t, s.UpdateKey(ctx, upd))
		want.Policy = p
		what := fmt.Sprintf("after UpdateKey with policy %d", i)
		got, err := s.GetKey(ctx, k.ID)
		must(t, err)
		sameKey(t, what, got, want)
		if v1, err := s.ChangeVersion(ctx); err != nil || v1 == v0 {
			t.Errorf("%s: ChangeVersion = %d, %v; was %d", what, v1, err, v0)
		}
	}

	// An edit with an activation time does not activate a key.
	other := newKey("upol-inactive", at(0))
	must(t, s.CreateKey(ctx, other))
	upd := other
	upd.ActivatedAt = ptr(at(time.Hour))
	must(t, s.UpdateKey(ctx, upd))
	got, err := s.GetKey(ctx, other.ID)
	must(t, err)
	sameKey(t, "after UpdateKey with ActivatedAt on an inactive key", got, other)
}

// testActivateKey checks that the first activation wins, whether it came
// from ActivateKey or from CreateKey, whatever the later calls offer
// (earlier or later times), and that activating touches nothing else.
func testActivateKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("act", at(0))
	k.Policy = store.KeyPolicy{ActivateFor: 24 * time.Hour}
	k.ExpiresAt = ptr(at(48 * time.Hour))
	must(t, s.CreateKey(ctx, k))

	first := at(time.Hour + 3*time.Millisecond).In(Zone())
	got, err := s.ActivateKey(ctx, k.ID, first)
	must(t, err)
	if !got.Equal(first) {
		t.Errorf("first ActivateKey = %v, want %v", got, first)
	}
	for _, later := range []time.Time{at(2 * time.Hour), at(time.Minute), first} {
		got, err := s.ActivateKey(ctx, k.ID, later)
		must(t, err)
		if !got.Equal(first) {
			t.Errorf("ActivateKey(%v) after the first = %v, want the first, %v", later, got, first)
		}
	}
	want := k
	want.ActivatedAt = &first
	stored, err := s.GetKey(ctx, k.ID)
	must(t, err)
	sameKey(t, "after ActivateKey", stored, want)

	imported := newKey("act-imported", at(0))
	imported.ActivatedAt = ptr(at(-time.Hour))
	must(t, s.CreateKey(ctx, imported))
	got, err = s.ActivateKey(ctx, imported.ID, at(time.Hour))
	must(t, err)
	if !got.Equal(*imported.ActivatedAt) {
		t.Errorf("ActivateKey of a key created active = %v, want %v", got, *imported.ActivatedAt)
	}

	_, err = s.ActivateKey(ctx, "key-missing", at(0))
	wantErr(t, "ActivateKey of a missing key", err, store.ErrNotFound)
	_, err = s.GetKey(ctx, "key-missing")
	wantErr(t, "GetKey after ActivateKey of a missing key", err, store.ErrNotFound)
}

// testActivateKeyRace activates one key from many goroutines at once, as
// the first requests of a new key on several instances would: all of them
// must get the same time, one of those offered, and it must be the one
// stored.
func testActivateKeyRace(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey("race", at(0))
	must(t, s.CreateKey(ctx, k))
	const callers = 16
	results := make([]time.Time, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			results[i], errs[i] = s.ActivateKey(ctx, k.ID, at(time.Duration(i+1)*time.Second))
		})
	}
	wg.Wait()
	for i, err := range errs {
		must(t, err)
		if !results[i].Equal(results[0]) {
			t.Errorf("caller %d got %v, caller 0 got %v", i, results[i], results[0])
		}
	}
	offered := results[0].Sub(base)
	if offered%time.Second != 0 || offered < time.Second || offered > callers*time.Second {
		t.Errorf("activated at %v, which no caller offered", results[0])
	}
	got, err := s.GetKey(ctx, k.ID)
	must(t, err)
	if got.ActivatedAt == nil || !got.ActivatedAt.Equal(results[0]) {
		t.Errorf("stored ActivatedAt = %v, callers got %v", got.ActivatedAt, results[0])
	}
}
