package sqlite

import (
	"reflect"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// TestQuotaEncoding covers the edges of the quota column's form that the
// conformance suite does not reach: which instants survive, which zero
// values stay zero, and what the column default reads as.
func TestQuotaEncoding(t *testing.T) {
	epoch := time.UnixMilli(0).UTC()
	at := time.Date(2025, time.March, 10, 9, 15, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   store.Quota
		want store.Quota // after a round trip
		enc  string      // the stored form, when it matters
	}{
		{name: "zero is the column default", in: store.Quota{}, want: store.Quota{}, enc: `{}`},
		{name: "empty limits are none", in: store.Quota{FamilyLimits: map[string]time.Time{}}, want: store.Quota{}, enc: `{}`},
		{
			name: "the epoch is not the zero time",
			in:   store.Quota{Window5h: store.Window{Start: epoch, End: epoch}},
			want: store.Quota{Window5h: store.Window{Start: epoch, End: epoch}},
			enc:  `{"window_5h":{"start":0,"end":0}}`,
		},
		{
			name: "a status without times",
			in:   store.Quota{Window5h: store.Window{Status: store.WindowRejected}},
			want: store.Quota{Window5h: store.Window{Status: store.WindowRejected}},
			enc:  `{"window_5h":{"status":"rejected"}}`,
		},
		{
			name: "times keep milliseconds, drop the rest, and read in UTC",
			in: store.Quota{
				Window5h: store.Window{
					Start: at.Add(999*time.Millisecond + 999*time.Microsecond).In(time.FixedZone("x", 3600)),
				},
				FamilyLimits: map[string]time.Time{"opus": at.Add(time.Nanosecond)},
			},
			want: store.Quota{
				Window5h:     store.Window{Start: at.Add(999 * time.Millisecond)},
				FamilyLimits: map[string]time.Time{"opus": at},
			},
		},
		{
			name: "a zero limit time stays zero",
			in:   store.Quota{FamilyLimits: map[string]time.Time{"haiku": {}}},
			want: store.Quota{FamilyLimits: map[string]time.Time{"haiku": {}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := encodeQuota(tc.in)
			must(t, err)
			if tc.enc != "" && enc != tc.enc {
				t.Errorf("encoded %s, want %s", enc, tc.enc)
			}
			got, err := decodeQuota(enc)
			must(t, err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("round trip of %s:\n got %+v\nwant %+v", enc, got, tc.want)
			}
		})
	}
	if _, err := decodeQuota(`{"window_5h":`); err == nil {
		t.Error("a truncated quota decoded without error")
	}
}

// TestOptionsEncoding checks that default options are stored as the column
// default and that an empty model map reads as none.
func TestOptionsEncoding(t *testing.T) {
	for _, o := range []store.AccountOptions{{}, {Models: map[string]string{}}} {
		enc, err := encodeOptions(o)
		must(t, err)
		if enc != `{}` {
			t.Errorf("encodeOptions(%+v) = %s, want {}", o, enc)
		}
	}
	got, err := decodeOptions(`{"models":{}}`)
	if err != nil || got.Models != nil {
		t.Errorf(`decodeOptions({"models":{}}) = %+v, %v; want nil models`, got, err)
	}
}
