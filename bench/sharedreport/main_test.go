package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"label":"embedded/1","requests":1000,"ok":1000,"req_per_sec":1000,"ttfb_p50_ms":1,"ttfb_p99_ms":3,"total_p99_ms":10}`,
		`{"label":"embedded/2","requests":1200,"ok":1200,"req_per_sec":1200,"ttfb_p50_ms":1,"ttfb_p99_ms":5,"total_p99_ms":12}`,
		`{"label":"shared/1","requests":800,"ok":800,"req_per_sec":800,"ttfb_p50_ms":2,"ttfb_p99_ms":4,"total_p99_ms":11}`,
		`{"label":"shared/1","trips":1600}`,
		`{"label":"shared/2","requests":1000,"ok":999,"errors":1,"req_per_sec":1000,"ttfb_p50_ms":2,"ttfb_p99_ms":6,"total_p99_ms":13}`,
		`{"label":"shared/2","trips":3000}`,
	}, "\n")
	var out bytes.Buffer
	if err := report(strings.NewReader(in), &out, "note"); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"| embedded | 1100 | 1.00× | 1.00 | 4.00 | +0.00 ms | 11.00 | — | 2200 (0) |",
		"| shared | 900 | 0.82× | 2.00 | 5.00 | +1.00 ms | 12.00 | 2.50 | 1800 (1) |",
		"\nnote\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if err := report(strings.NewReader(""), &out, ""); err == nil {
		t.Error("no runs: no error")
	}
}
