package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// line is one loadgen result as JSON.
func line(label string, requests int, cpu float64, rssStart, rssPeak int64, samplesUS ...int64) string {
	s := fmt.Sprintf(`{"label":%q,"requests":%d,"ok":%d,"wall_seconds":2,"cpu_seconds":%v,"rss_start_kib":%d,"rss_peak_kib":%d,"hold":1000`,
		label, requests, requests, cpu, rssStart, rssPeak)
	if len(samplesUS) > 0 {
		parts := make([]string, len(samplesUS))
		for i, v := range samplesUS {
			parts[i] = fmt.Sprint(v)
		}
		s += `,"ttfb_samples_us":[` + strings.Join(parts, ",") + `]`
	}
	return s + "}\n"
}

func TestReportVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		crsCPU   float64 // seconds for 1000 requests, bare uses 1.0
		crsP99US int64   // bare's is 1000
		crsRSS   int64   // KiB peak, bare's is 100000
		want     []string
	}{
		{name: "all met", crsCPU: 1.2, crsP99US: 1900, crsRSS: 140000, want: []string{
			"| CPU per 1000 requests, 32 streams, 0.3 KiB | 1.200 s | 1.000 s | 1.20× | ≤ 1.3× | yes |",
			"| TTFB p99, concurrency 1, 0.3 KiB | 1.900 ms | 1.000 ms | +0.900 ms | ≤ +1 ms | yes |",
			"| RSS peak, holding 1000 streams | 136.7 MiB | 97.7 MiB | 1.40× | ≤ 1.5× | yes |",
			"req/s, 32 streams, 0.3 KiB | 500 req/s | 500 req/s | 1.00×",
			"Errors: none.",
		}},
		{name: "all missed", crsCPU: 1.4, crsP99US: 2100, crsRSS: 160000, want: []string{
			"| 1.40× | ≤ 1.3× | **NO** |",
			"| +1.100 ms | ≤ +1 ms | **NO** |",
			"| 1.60× | ≤ 1.5× | **NO** |",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in strings.Builder
			for round := 1; round <= 2; round++ {
				// 100 samples per round, the last two slow: the p99 of the
				// pooled 200 (nearest rank 198) is a slow one.
				bare := make([]int64, 100)
				crs := make([]int64, 100)
				for i := range bare {
					bare[i], crs[i] = 500, 700
				}
				bare[98], crs[98] = 1000, tt.crsP99US
				bare[99], crs[99] = 1000, tt.crsP99US
				in.WriteString(line(fmt.Sprintf("a/bare/%d", round), 100, 0.1, 0, 0, bare...))
				in.WriteString(line(fmt.Sprintf("a/crs/%d", round), 100, 0.1, 0, 0, crs...))
				in.WriteString(line(fmt.Sprintf("b/bare/%d", round), 1000, 1.0, 0, 0))
				in.WriteString(line(fmt.Sprintf("b/crs/%d", round), 1000, tt.crsCPU, 0, 0))
				in.WriteString(line(fmt.Sprintf("d/bare/%d", round), 1000, 1, 8000, 100000))
				in.WriteString(line(fmt.Sprintf("d/crs/%d", round), 1000, 1, 9000, tt.crsRSS))
			}
			var out bytes.Buffer
			if err := run([]string{"-note", "a note"}, strings.NewReader(in.String()), &out); err != nil {
				t.Fatal(err)
			}
			for _, w := range append(tt.want, "a note", "| b/crs/2 |") {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "ttfb_samples_us") {
				t.Error("raw section repeats the samples")
			}
		})
	}
}

func TestReportRejectsBadInput(t *testing.T) {
	for _, in := range []string{"", "not json\n", `{"label":"a-crs-1"}` + "\n"} {
		if err := run(nil, strings.NewReader(in), &bytes.Buffer{}); err == nil {
			t.Errorf("input %q accepted", in)
		}
	}
}
