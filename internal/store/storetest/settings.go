package storetest

import (
	"bytes"
	"testing"

	"github.com/crs-relay/crs/internal/store"
)

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetSetting(ctx, "notify.channels")
	wantErr(t, "GetSetting before SetSetting", err, store.ErrNotFound)

	v0, err := s.ChangeVersion(ctx)
	must(t, err)
	blob := []byte{0, 1, 2, 0xff, '{', '}'}
	must(t, s.SetSetting(ctx, "notify.channels", blob))
	must(t, s.SetSetting(ctx, "console.theme", []byte("dark")))
	got, err := s.GetSetting(ctx, "notify.channels")
	must(t, err)
	if !bytes.Equal(got, blob) {
		t.Errorf("GetSetting = %v, want %v", got, blob)
	}
	v1, err := s.ChangeVersion(ctx)
	must(t, err)
	if v1 == v0 {
		t.Error("SetSetting did not change ChangeVersion")
	}
	// Replacing keeps one value; an empty value is a value.
	must(t, s.SetSetting(ctx, "notify.channels", []byte{}))
	if got, err := s.GetSetting(ctx, "notify.channels"); err != nil || len(got) != 0 {
		t.Errorf("GetSetting after setting empty = %v, %v", got, err)
	}
	// nil removes; removing an unset name is harmless.
	must(t, s.SetSetting(ctx, "notify.channels", nil))
	_, err = s.GetSetting(ctx, "notify.channels")
	wantErr(t, "GetSetting after removal", err, store.ErrNotFound)
	must(t, s.SetSetting(ctx, "never-set", nil))
	if got, err := s.GetSetting(ctx, "console.theme"); err != nil || string(got) != "dark" {
		t.Errorf("another setting = %q, %v", got, err)
	}
	v2, err := s.ChangeVersion(ctx)
	must(t, err)
	if v2 == v1 {
		t.Error("removing a setting did not change ChangeVersion")
	}
}
