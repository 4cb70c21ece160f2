package store

import (
	"reflect"
	"testing"
	"time"
)

// TestQuotaEncoding covers the edges of the quota column's form that the
// conformance suite does not reach: which instants survive, which zero
// values stay zero, and what the column default reads as.
func TestQuotaEncoding(t *testing.T) {
	epoch := time.UnixMilli(0).UTC()
	at := time.Date(2025, time.March, 10, 9, 15, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   Quota
		want Quota  // after a round trip
		enc  string // the stored form, when it matters
	}{
		{name: "zero is the column default", in: Quota{}, want: Quota{}, enc: `{}`},
		{name: "empty limits are none", in: Quota{FamilyLimits: map[string]time.Time{}}, want: Quota{}, enc: `{}`},
		{
			name: "the epoch is not the zero time",
			in:   Quota{Window5h: Window{Start: epoch, End: epoch}},
			want: Quota{Window5h: Window{Start: epoch, End: epoch}},
			enc:  `{"window_5h":{"start":0,"end":0}}`,
		},
		{
			name: "a status without times",
			in:   Quota{Window5h: Window{Status: WindowRejected}},
			want: Quota{Window5h: Window{Status: WindowRejected}},
			enc:  `{"window_5h":{"status":"rejected"}}`,
		},
		{
			name: "times keep milliseconds, drop the rest, and read in UTC",
			in: Quota{
				Window5h: Window{
					Start: at.Add(999*time.Millisecond + 999*time.Microsecond).In(time.FixedZone("x", 3600)),
				},
				FamilyLimits: map[string]time.Time{"opus": at.Add(time.Nanosecond)},
			},
			want: Quota{
				Window5h:     Window{Start: at.Add(999 * time.Millisecond)},
				FamilyLimits: map[string]time.Time{"opus": at},
			},
		},
		{
			name: "a zero limit time stays zero",
			in:   Quota{FamilyLimits: map[string]time.Time{"haiku": {}}},
			want: Quota{FamilyLimits: map[string]time.Time{"haiku": {}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := EncodeQuota(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if tc.enc != "" && enc != tc.enc {
				t.Errorf("encoded %s, want %s", enc, tc.enc)
			}
			got, err := DecodeQuota(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("round trip of %s:\n got %+v\nwant %+v", enc, got, tc.want)
			}
		})
	}
	if _, err := DecodeQuota(`{"window_5h":`); err == nil {
		t.Error("a truncated quota decoded without error")
	}
}
