package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

func TestUSDMarshalsAsExactNumber(t *testing.T) {
	for _, c := range []struct {
		pico int64
		want string
	}{
		{0, "0"},
		{1, "0.000000000001"},
		{1_000_000, "0.000001"},
		{1_500_000_000_000, "1.5"},
		{3_000_000_000_000, "3"},
		{-2_500_000, "-0.0000025"},
		{math.MaxInt64, "9223372.036854775807"},
	} {
		u := USD{pricing.FromPico(c.pico)}
		b, err := json.Marshal(struct {
			C USD `json:"c"`
		}{u})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != `{"c":`+c.want+`}` {
			t.Errorf("%d pico: %s, want %s", c.pico, got, c.want)
		}
		// And it reads back to the same amount.
		var back struct {
			C USD `json:"c"`
		}
		if err := json.Unmarshal(b, &back); err != nil || !back.C.Equal(u.Decimal) {
			t.Errorf("%d pico: round trip %v, %v", c.pico, back.C, err)
		}
	}
}

func TestBootstrapCreatesAdminOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var out bytes.Buffer
	created, err := Bootstrap(ctx, st, dir, "", "", &out)
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	path := filepath.Join(dir, InitFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ AdminUsername, AdminPassword, CreatedAt string }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.AdminUsername != "admin" || len(f.AdminPassword) != 24 || f.CreatedAt == "" {
		t.Fatalf("init.json = %s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("init.json mode %v", fi.Mode().Perm())
	}
	if !strings.Contains(out.String(), f.AdminPassword) || !strings.Contains(out.String(), path) {
		t.Fatalf("credentials not printed: %q", out.String())
	}
	adm, err := st.GetAdmin(ctx)
	if err != nil || adm.Username != "admin" || bcrypt.CompareHashAndPassword([]byte(adm.PasswordHash), []byte(f.AdminPassword)) != nil {
		t.Fatalf("stored admin %+v, %v", adm, err)
	}

	// The second start changes nothing and prints nothing.
	out.Reset()
	created, err = Bootstrap(ctx, st, dir, "other", "other-password", &out)
	if err != nil || created || out.Len() != 0 {
		t.Fatalf("second Bootstrap = %v, %v, %q", created, err, out.String())
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Fatal("init.json rewritten")
	}

	// ADMIN_USERNAME / ADMIN_PASSWORD are used when given.
	dir2 := t.TempDir()
	st2, err := sqlite.Open(ctx, filepath.Join(dir2, "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := Bootstrap(ctx, st2, dir2, "boss", "given password", &out); err != nil {
		t.Fatal(err)
	}
	adm, _ = st2.GetAdmin(ctx)
	if adm.Username != "boss" || bcrypt.CompareHashAndPassword([]byte(adm.PasswordHash), []byte("given password")) != nil {
		t.Fatalf("env credentials not used: %+v", adm)
	}
}

func TestServiceKeyAndAccountRules(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	s := e.svc

	// Expiry in the future is kept; status follows the clock.
	exp := e.clock.Now().Add(time.Hour)
	kv, key, err := s.CreateKey(ctx, KeyInput{Name: "k", ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if kv.Hint != key[len(key)-4:] || kv.Status != store.KeyActive || kv.Tags == nil {
		t.Fatalf("view %+v", kv)
	}
	e.clock.Advance(time.Hour)
	if kv, _ = s.GetKey(ctx, kv.ID); kv.Status != store.KeyExpired {
		t.Fatalf("status %q, want expired", kv.Status)
	}
	// Clearing the expiry through the patch's pointer-to-nil.
	var none *time.Time
	if kv, err = s.UpdateKey(ctx, kv.ID, KeyPatch{ExpiresAt: &none}); err != nil || kv.Status != store.KeyActive {
		t.Fatalf("cleared expiry: %+v, %v", kv, err)
	}
	// Remove twice keeps the first deletion time.
	if err := s.RemoveKey(ctx, kv.ID); err != nil {
		t.Fatal(err)
	}
	first, _ := s.GetKey(ctx, kv.ID)
	e.clock.Advance(time.Minute)
	s.RemoveKey(ctx, kv.ID)
	second, _ := s.GetKey(ctx, kv.ID)
	if first.DeletedAt == nil || !first.DeletedAt.Equal(*second.DeletedAt) {
		t.Fatalf("deleted_at moved: %v → %v", first.DeletedAt, second.DeletedAt)
	}

	// Accounts: priority is required at the service level.
	_, err = s.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "a", APIKey: "k"})
	if !IsInvalid(err) || !strings.HasPrefix(err.Error(), "priority:") {
		t.Fatalf("missing priority: %v", err)
	}
	// A proxy sealed under another ENCRYPTION_KEY does not break listing.
	av, err := s.AddAccount(ctx, AccountInput{Platform: "claude", Type: "api-key", Name: "a", APIKey: "k", Priority: 1, Proxy: "http://p:8080"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := e.st.GetAccount(ctx, av.ID)
	a.SealedProxy = []byte("\x01garbage-not-sealed-by-this-box-at-all")
	if err := e.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListAccounts(ctx)
	if err != nil || len(list) != 1 || !strings.HasPrefix(list[0].Proxy, "(cannot decrypt") {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// An expired cooldown is not shown.
	if err := e.st.SetCooldown(ctx, av.ID, store.CooldownTransient, e.clock.Now().Add(time.Second), "529"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetAccount(ctx, av.ID); v.Status != "cooling_down" || v.CooldownUntil == nil {
		t.Fatalf("cooling = %+v", v)
	}
	e.clock.Advance(2 * time.Second)
	if v, _ := s.GetAccount(ctx, av.ID); v.Status != "active" || v.CooldownUntil != nil || v.CooldownReason != "" {
		t.Fatalf("after cooldown = %+v", v)
	}
}

func TestDurationsReadAndWriteAlike(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"5m", 5 * time.Minute, "5m"},
		{"60m", time.Hour, "1h"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"90s", 90 * time.Second, "1m30s"},
		{"36h", 36 * time.Hour, "36h"},
		{"48h", 48 * time.Hour, "2d"},
		{"30d", 30 * 24 * time.Hour, "30d"},
		{" 1d ", 24 * time.Hour, "1d"},
		{"0", 0, "0s"},
	} {
		d, err := ParseDuration(c.in)
		if err != nil || d != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, d, err, c.want)
			continue
		}
		if got := FormatDuration(d); got != c.out {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, c.out)
		}
		// What is written reads back to the same span.
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("round trip of %v: %v, %v", d, back, err)
		}
	}
	for _, bad := range []string{"", "soon", "-1h", "-2d", "1.5d", "d", "36501d", "5 m"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, d)
		}
	}
}

func TestParseWeekday(t *testing.T) {
	for in, want := range map[string]int{
		"sun": 0, "Sunday": 0, "0": 0, "mon": 1, "MON": 1, "monday": 1, "tue": 2, "wed": 3, "thu": 4, "thursday": 4,
		"fri": 5, "sat": 6, "6": 6, " fri ": 5,
	} {
		if got, err := ParseWeekday(in); err != nil || got != want {
			t.Errorf("ParseWeekday(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "t", "su", "7", "-1", "mondays", "funday"} {
		if got, err := ParseWeekday(bad); err == nil {
			t.Errorf("ParseWeekday(%q) = %d, want an error", bad, got)
		}
	}
}

func TestServiceKeyPolicyRules(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	s := e.svc
	usd := func(v string) *USD { return &USD{pricing.FromPico(mustPico(t, v))} }

	// The default policy is stored with Monday as the reset day, since a
	// stored 0 is Sunday.
	kv, _, err := s.CreateKey(ctx, KeyInput{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := e.st.GetKey(ctx, kv.ID)
	if k.Policy.WeeklyResetDay != int(time.Monday) || kv.WeeklyResetDay != 1 {
		t.Fatalf("default reset day: stored %d, view %d", k.Policy.WeeklyResetDay, kv.WeeklyResetDay)
	}

	// A window with its limits; removing the window removes them.
	hour, zero := time.Hour, time.Duration(0)
	n := int64(10)
	if _, err := s.UpdateKey(ctx, kv.ID, KeyPatch{Policy: PolicyPatch{RateWindow: &hour, RateRequests: &n, RateCost: usd("1.5")}}); err != nil {
		t.Fatal(err)
	}
	k, _ = e.st.GetKey(ctx, kv.ID)
	if k.Policy.RateWindow != time.Hour || k.Policy.RateRequests != 10 || k.Policy.RateCost != 1_500_000_000_000 {
		t.Fatalf("window stored as %+v", k.Policy)
	}
	// Taking away the last limit leaves a window with nothing to count.
	nothing := int64(0)
	_, err = s.UpdateKey(ctx, kv.ID, KeyPatch{Policy: PolicyPatch{RateRequests: &nothing, RateCost: usd("0")}})
	if !IsInvalid(err) || !strings.HasPrefix(err.Error(), "rate_window:") {
		t.Fatalf("window without limits: %v", err)
	}
	if _, err := s.UpdateKey(ctx, kv.ID, KeyPatch{Policy: PolicyPatch{RateWindow: &zero}}); err != nil {
		t.Fatal(err)
	}
	k, _ = e.st.GetKey(ctx, kv.ID)
	if k.Policy.RateWindow != 0 || k.Policy.RateRequests != 0 || k.Policy.RateCost != 0 {
		t.Fatalf("after removing the window: %+v", k.Policy)
	}
	// Removing the window while setting a limit is a contradiction.
	_, err = s.UpdateKey(ctx, kv.ID, KeyPatch{Policy: PolicyPatch{RateWindow: &zero, RateRequests: &n}})
	if !IsInvalid(err) || !strings.HasPrefix(err.Error(), "rate_requests:") {
		t.Fatalf("limit without window: %v", err)
	}

	// A refused patch stores nothing, even the fields before the bad one.
	desc, bad := "changed", -1
	if _, err := s.UpdateKey(ctx, kv.ID, KeyPatch{Policy: PolicyPatch{Description: &desc, Concurrency: &bad}}); !IsInvalid(err) {
		t.Fatalf("negative concurrency: %v", err)
	}
	if k, _ = e.st.GetKey(ctx, kv.ID); k.Policy.Description != "" {
		t.Fatalf("refused patch stored description %q", k.Policy.Description)
	}

	// Fixed expiry and activation exclude each other, on create too.
	exp := e.clock.Now().Add(time.Hour)
	week := 7 * 24 * time.Hour
	_, _, err = s.CreateKey(ctx, KeyInput{Name: "both", ExpiresAt: &exp, Policy: PolicyPatch{ActivateFor: &week}})
	if !IsInvalid(err) || !strings.HasPrefix(err.Error(), "activate_for:") {
		t.Fatalf("both expiries: %v", err)
	}
	// An activation key whose activation is older than its span is
	// expired; a fixed expiry set later takes over.
	av, _, err := s.CreateKey(ctx, KeyInput{Name: "act", Policy: PolicyPatch{ActivateFor: &hour}})
	if err != nil || av.ExpiresAt != nil || av.Status != store.KeyActive {
		t.Fatalf("activation key %+v, %v", av, err)
	}
	at := e.clock.Now().Add(-2 * time.Hour).Truncate(time.Millisecond) // the store keeps milliseconds
	if _, err := e.st.ActivateKey(ctx, av.ID, at); err != nil {
		t.Fatal(err)
	}
	if av, _ = s.GetKey(ctx, av.ID); av.Status != store.KeyExpired || av.ExpiresAt == nil || !av.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("activated an hour too long ago: %+v", av)
	}
	later := e.clock.Now().Add(24 * time.Hour)
	pl := &later
	if av, err = s.UpdateKey(ctx, av.ID, KeyPatch{ExpiresAt: &pl}); err != nil || av.Status != store.KeyActive ||
		av.ActivateFor != nil || !av.ExpiresAt.Equal(later.UTC()) {
		t.Fatalf("fixed expiry over activation: %+v, %v", av, err)
	}
}

func mustPico(t *testing.T, v string) int64 {
	t.Helper()
	p, err := pricing.ParseUSD(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBootstrapRaceCreatesOneAdmin: instances starting together on one store
// (shared mode) create one admin, and the password in the init.json of the
// one that created it is the stored one.
func TestBootstrapRaceCreatesOneAdmin(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 4
	dirs := make([]string, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		dirs[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			created[i], err = Bootstrap(ctx, st, dirs[i], "admin", "", io.Discard)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	adm, err := st.GetAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var winners int
	for i := range n {
		b, err := os.ReadFile(filepath.Join(dirs[i], InitFile))
		if !created[i] {
			if err == nil {
				t.Errorf("instance %d did not create the admin but wrote init.json", i)
			}
			continue
		}
		winners++
		var f struct{ AdminPassword string }
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if bcrypt.CompareHashAndPassword([]byte(adm.PasswordHash), []byte(f.AdminPassword)) != nil {
			t.Errorf("instance %d's init.json password is not the stored one", i)
		}
	}
	if winners != 1 {
		t.Errorf("%d instances created the admin, want 1", winners)
	}
}

// TestInvalidErrorKeepsItsFormat: a refusal reads in English as it always
// has, for the CLI and the JSON API, and carries the format and arguments
// it was made of, so the console can say it in another language.
func TestInvalidErrorKeepsItsFormat(t *testing.T) {
	e := newTestEnv(t)
	_, _, err := e.svc.CreateKey(context.Background(), KeyInput{Name: "k", Tags: []string{strings.Repeat("t", maxTagLen+1)}})
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("long tag: %v", err)
	}
	reason := fmt.Sprintf("tag %q is longer than %d characters", strings.Repeat("t", maxTagLen+1), maxTagLen)
	if inv.Error() != "tags: "+reason || inv.Reason != reason {
		t.Errorf("English changed: %q", inv.Error())
	}
	if inv.Format != "tag %q is longer than %d characters" || fmt.Sprintf(inv.Format, inv.Args...) != inv.Reason {
		t.Errorf("format %q with %v does not make the reason %q", inv.Format, inv.Args, inv.Reason)
	}
}

// TestDummyHashCostsWhatTheAdminsDoes: the stored timing equaliser is a
// valid hash at the cost new admin hashes get, so a wrong username takes
// as long as a wrong password.
func TestDummyHashCostsWhatTheAdminsDoes(t *testing.T) {
	cost, err := bcrypt.Cost([]byte(dummyHash))
	if err != nil || cost != bcryptCost {
		t.Fatalf("dummyHash cost %d, %v; want %d", cost, err, bcryptCost)
	}
	if bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte("crs timing equaliser")) != nil {
		t.Error("dummyHash is not the hash of its password")
	}
}
