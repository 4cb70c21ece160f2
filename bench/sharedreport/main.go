// Command sharedreport turns the JSON lines bench/shared.sh collects into the
// markdown table of docs/benchmarks.md: req/s and latency of crs on its
// embedded store and on Redis (shared mode) at the same load, as medians over
// interleaved rounds, with the shared store's round trips per request.
//
// Input lines are loadgen results whose label is "MODE/ROUND", and lines
// {"label":"MODE/ROUND","trips":N} with the round trips the crs under test
// reported over that run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

type line struct {
	Label      string   `json:"label"`
	Requests   int      `json:"requests"`
	OK         int      `json:"ok"`
	Errors     int      `json:"errors"`
	ReqPerSec  float64  `json:"req_per_sec"`
	TTFBp50ms  float64  `json:"ttfb_p50_ms"`
	TTFBp99ms  float64  `json:"ttfb_p99_ms"`
	Totalp99ms float64  `json:"total_p99_ms"`
	Trips      *float64 `json:"trips"`
}

type mode struct {
	name                      string
	rps, p50, p99, total, tpr []float64
	requests, errors          int
}

func main() {
	note := flag.String("note", "", "text printed under the table")
	flag.Parse()
	if err := report(os.Stdin, os.Stdout, *note); err != nil {
		fmt.Fprintln(os.Stderr, "sharedreport:", err)
		os.Exit(1)
	}
}

func report(in io.Reader, out io.Writer, note string) error {
	modes := map[string]*mode{}
	var order []string
	trips := map[string]float64{}
	runs := map[string]line{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("bad line %.80q: %w", sc.Text(), err)
		}
		if l.Trips != nil {
			trips[l.Label] = *l.Trips
			continue
		}
		runs[l.Label] = l
		name, _, _ := strings.Cut(l.Label, "/")
		if modes[name] == nil {
			modes[name] = &mode{name: name}
			order = append(order, name)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(order) == 0 {
		return fmt.Errorf("no runs")
	}
	for label, l := range runs {
		name, _, _ := strings.Cut(label, "/")
		m := modes[name]
		m.rps = append(m.rps, l.ReqPerSec)
		m.p50 = append(m.p50, l.TTFBp50ms)
		m.p99 = append(m.p99, l.TTFBp99ms)
		m.total = append(m.total, l.Totalp99ms)
		m.requests += l.Requests
		m.errors += l.Errors
		if t, ok := trips[label]; ok && l.Requests > 0 {
			m.tpr = append(m.tpr, t/float64(l.Requests))
		}
	}
	base := modes[order[0]]
	fmt.Fprintf(out, "| mode | req/s (median) | vs %s | TTFB p50 ms | TTFB p99 ms | p99 added vs %s | total p99 ms | Redis round trips / request | requests (errors) |\n", base.name, base.name)
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, name := range order {
		m := modes[name]
		tpr := "—"
		if len(m.tpr) > 0 {
			tpr = fmt.Sprintf("%.2f", median(m.tpr))
		}
		fmt.Fprintf(out, "| %s | %.0f | %.2f× | %.2f | %.2f | %+.2f ms | %.2f | %s | %d (%d) |\n",
			m.name, median(m.rps), median(m.rps)/median(base.rps), median(m.p50), median(m.p99),
			median(m.p99)-median(base.p99), median(m.total), tpr, m.requests, m.errors)
	}
	if note != "" {
		fmt.Fprintf(out, "\n%s\n", note)
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
