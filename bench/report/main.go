// Command report turns the JSON lines that bench/run.sh collects from
// loadgen into the markdown table of docs/benchmarks.md: each figure for crs
// and for the bare proxy, their ratio, and whether the target is met.
// Runs are labelled "PHASE/PROXY/ROUND" (loadgen -label); rounds are pooled,
// so drift during the run weighs on both proxies alike.
//
// Usage: report [-note TEXT] < results.jsonl > table.md
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// result holds the loadgen fields the report reads (see loadgen's Result).
type result struct {
	Label             string         `json:"label"`
	Concurrency       int            `json:"concurrency"`
	Hold              int            `json:"hold"`
	BodyBytes         int            `json:"body_bytes"`
	Requests          int            `json:"requests"`
	OK                int            `json:"ok"`
	Errors            int            `json:"errors"`
	ErrorKinds        map[string]int `json:"error_kinds"`
	WallSeconds       float64        `json:"wall_seconds"`
	ReqPerSec         float64        `json:"req_per_sec"`
	TTFBp50ms         float64        `json:"ttfb_p50_ms"`
	TTFBp99ms         float64        `json:"ttfb_p99_ms"`
	Totalp50ms        float64        `json:"total_p50_ms"`
	TTFBSamplesUS     []int64        `json:"ttfb_samples_us"`
	CPUSeconds        float64        `json:"cpu_seconds"`
	CPUSecondsPer1000 float64        `json:"cpu_seconds_per_1000"`
	RSSStartKiB       int64          `json:"rss_start_kib"`
	RSSPeakKiB        int64          `json:"rss_peak_kib"`

	phase, proxy, round string
	raw                 []byte
}

// Phases of bench/run.sh, in report order.
const (
	phaseTTFB  = "a" // concurrency 1, small body
	phaseSmall = "b" // concurrency 32, small body
	phaseLarge = "c" // concurrency 32, 64 KiB body
	phaseHold  = "d" // 1000 held slow streams
)

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	note := fs.String("note", "", "line printed under the title (e.g. the settings of the run)")
	goVersion := fs.String("go", runtime.Version(), "Go version that built the binaries under test")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results, err := read(in)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("no results on stdin")
	}
	write(out, results, *note, *goVersion)
	return writeRaw(out, results)
}

// writeRaw appends every run as JSON, without the TTFB samples (they are in
// the .jsonl file next to the report), so the table can be rechecked.
func writeRaw(w io.Writer, results []result) error {
	fmt.Fprintln(w, "\n<details><summary>raw loadgen results (JSON, samples omitted)</summary>\n\n```json")
	for _, r := range results {
		var m map[string]any
		if err := json.Unmarshal(r.raw, &m); err != nil {
			return err
		}
		delete(m, "ttfb_samples_us")
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
	}
	fmt.Fprintln(w, "```\n\n</details>")
	return nil
}

func read(in io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		parts := strings.Split(r.Label, "/")
		if len(parts) != 3 {
			return nil, fmt.Errorf("line %d: label %q is not PHASE/PROXY/ROUND", n, r.Label)
		}
		r.phase, r.proxy, r.round = parts[0], parts[1], parts[2]
		r.raw = []byte(line)
		out = append(out, r)
	}
	return out, sc.Err()
}

// pooled sums one phase's runs of one proxy over all rounds.
type pooled struct {
	runs       int
	requests   int
	ok, errors int
	errorKinds map[string]int
	wall       float64
	cpu        float64
	ttfb       []int64 // microseconds, sorted
	rssPeaks   []int64 // KiB, one per run
	rssStarts  []int64 // KiB, one per run
}

func pool(results []result, phase, proxy string) pooled {
	p := pooled{errorKinds: map[string]int{}}
	for _, r := range results {
		if r.phase != phase || r.proxy != proxy {
			continue
		}
		p.runs++
		p.requests += r.Requests
		p.ok += r.OK
		p.errors += r.Errors
		for k, n := range r.ErrorKinds {
			p.errorKinds[k] += n
		}
		p.wall += r.WallSeconds
		p.cpu += r.CPUSeconds
		p.ttfb = append(p.ttfb, r.TTFBSamplesUS...)
		p.rssPeaks = append(p.rssPeaks, r.RSSPeakKiB)
		p.rssStarts = append(p.rssStarts, r.RSSStartKiB)
	}
	slices.Sort(p.ttfb)
	return p
}

func (p pooled) reqPerSec() float64 {
	if p.wall == 0 {
		return 0
	}
	return float64(p.ok) / p.wall
}

func (p pooled) cpuPer1000() float64 {
	if p.requests == 0 {
		return 0
	}
	return p.cpu * 1000 / float64(p.requests)
}

// medianMiB is the median of KiB figures, in MiB (the lower middle one of
// an even count, so it is always a figure that was measured).
func medianMiB(kib []int64) float64 {
	if len(kib) == 0 {
		return 0
	}
	s := slices.Clone(kib)
	slices.Sort(s)
	return kib2mib(s[(len(s)-1)/2])
}

// ttfbMs is a nearest-rank percentile of the pooled TTFB samples.
func (p pooled) ttfbMs(q float64) float64 {
	if len(p.ttfb) == 0 {
		return 0
	}
	rank := int(q/100*float64(len(p.ttfb))+0.999999) - 1
	return float64(p.ttfb[min(max(rank, 0), len(p.ttfb)-1)]) / 1000
}

// row is one line of the summary table.
type row struct {
	name      string
	crs, bare float64
	unit      string
	digits    int
	// target describes the goal; check reports whether crs meets it.
	target string
	check  func(crs, bare float64) bool
	// diff shows crs−bare instead of crs/bare in the ratio column.
	diff bool
}

func write(w io.Writer, results []result, note, goVersion string) {
	get := func(phase, proxy string) pooled { return pool(results, phase, proxy) }
	aC, aB := get(phaseTTFB, "crs"), get(phaseTTFB, "bare")
	bC, bB := get(phaseSmall, "crs"), get(phaseSmall, "bare")
	cC, cB := get(phaseLarge, "crs"), get(phaseLarge, "bare")
	dC, dB := get(phaseHold, "crs"), get(phaseHold, "bare")

	ratioAtMost := func(limit float64) func(c, b float64) bool {
		return func(c, b float64) bool { return b > 0 && c/b <= limit }
	}
	rows := []row{
		{name: "TTFB p50, concurrency 1, 0.3 KiB", crs: aC.ttfbMs(50), bare: aB.ttfbMs(50), unit: "ms", digits: 3, diff: true},
		{name: "TTFB p99, concurrency 1, 0.3 KiB", crs: aC.ttfbMs(99), bare: aB.ttfbMs(99), unit: "ms", digits: 3, diff: true,
			target: "≤ +1 ms", check: func(c, b float64) bool { return c-b <= 1 }},
		{name: "req/s, 32 streams, 0.3 KiB", crs: bC.reqPerSec(), bare: bB.reqPerSec(), unit: "req/s", digits: 0},
		{name: "CPU per 1000 requests, 32 streams, 0.3 KiB", crs: bC.cpuPer1000(), bare: bB.cpuPer1000(), unit: "s", digits: 3,
			target: "≤ 1.3×", check: ratioAtMost(1.3)},
		{name: "req/s, 32 streams, 64 KiB", crs: cC.reqPerSec(), bare: cB.reqPerSec(), unit: "req/s", digits: 0},
		{name: "CPU per 1000 requests, 32 streams, 64 KiB", crs: cC.cpuPer1000(), bare: cB.cpuPer1000(), unit: "s", digits: 3,
			target: "≤ 1.3×", check: ratioAtMost(1.3)},
		{name: "RSS idle, before holding streams", crs: medianMiB(dC.rssStarts), bare: medianMiB(dB.rssStarts), unit: "MiB", digits: 1},
		{name: fmt.Sprintf("RSS peak, holding %d streams", holdCount(results)), crs: medianMiB(dC.rssPeaks), bare: medianMiB(dB.rssPeaks), unit: "MiB", digits: 1,
			target: "≤ 1.5×", check: ratioAtMost(1.5)},
	}

	fmt.Fprintf(w, "## crs vs bare reverse proxy — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s, %s/%s.\n", runtime.NumCPU(), cpuModel(), goVersion, runtime.GOOS, runtime.GOARCH)
	if note != "" {
		fmt.Fprintf(w, "%s\n", note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measure | crs | bare | crs/bare | target | met |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | --- |")
	for _, r := range rows {
		cmp := "—"
		switch {
		case r.diff:
			cmp = fmt.Sprintf("%+.*f %s", r.digits, r.crs-r.bare, r.unit)
		case r.bare > 0:
			cmp = fmt.Sprintf("%.2f×", r.crs/r.bare)
		}
		met := ""
		if r.check != nil {
			met = "yes"
			if !r.check(r.crs, r.bare) {
				met = "**NO**"
			}
		}
		fmt.Fprintf(w, "| %s | %.*f %s | %.*f %s | %s | %s | %s |\n",
			r.name, r.digits, r.crs, r.unit, r.digits, r.bare, r.unit, cmp, r.target, met)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "TTFB is pooled over all rounds (samples of every request); req/s is successful requests over")
	fmt.Fprintln(w, "summed wall time; CPU is utime+stime of the proxy process only. For the held streams each round")
	fmt.Fprintln(w, "starts fresh proxy processes; RSS peak is the highest VmRSS sampled every 50 ms during the hold,")
	fmt.Fprintln(w, "RSS idle the VmRSS just before it, both the median over rounds. For TTFB the crs/bare column")
	fmt.Fprintln(w, "shows the added time, crs − bare.")

	// Per-round figures show the spread the pooled numbers hide.
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | requests | errors | req/s | TTFB p50 ms | TTFB p99 ms | CPU s/1000 | RSS peak MiB |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.3f | %.3f | %.3f | %.1f |\n", r.Label, r.Requests, r.Errors,
			r.ReqPerSec, r.TTFBp50ms, r.TTFBp99ms, r.CPUSecondsPer1000, kib2mib(r.RSSPeakKiB))
	}

	var errLines []string
	for _, p := range []struct {
		name string
		p    pooled
	}{{"a/crs", aC}, {"a/bare", aB}, {"b/crs", bC}, {"b/bare", bB}, {"c/crs", cC}, {"c/bare", cB}, {"d/crs", dC}, {"d/bare", dB}} {
		for k, n := range p.p.errorKinds {
			errLines = append(errLines, fmt.Sprintf("- %s: %d × %s", p.name, n, k))
		}
	}
	slices.Sort(errLines)
	fmt.Fprintln(w)
	if len(errLines) == 0 {
		fmt.Fprintln(w, "Errors: none.")
	} else {
		fmt.Fprintln(w, "Errors (these runs' figures are suspect):")
		for _, l := range errLines {
			fmt.Fprintln(w, l)
		}
	}
}

func holdCount(results []result) int {
	for _, r := range results {
		if r.phase == phaseHold && r.Hold > 0 {
			return r.Hold
		}
	}
	return 0
}

func kib2mib(k int64) float64 { return float64(k) / 1024 }

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
