package web

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Charts are SVG drawn here, inline in the page: no script, no library, and
// colours from the stylesheet (classes s0…s4), so both themes apply.

// series is one line of a chart.
type series struct {
	Name   string
	Values []float64
}

// lineChart draws series over labels (one per point) with a y axis from 0.
// Every series must have len(labels) values.
func lineChart(labels []string, ss []series, width, height int) template.HTML {
	const padL, padR, padT, padB = 56, 12, 10, 26
	plotW, plotH := float64(width-padL-padR), float64(height-padT-padB)
	top := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			top = math.Max(top, v)
		}
	}
	top = niceCeil(top)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" xmlns="http://www.w3.org/2000/svg">`, width, height)
	for i := 0; i <= 4; i++ {
		y := float64(padT) + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, padL, y, width-padR, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, html.EscapeString(short(top*float64(i)/4)))
	}
	n := len(labels)
	x := func(i int) float64 {
		if n <= 1 {
			return float64(padL) + plotW/2
		}
		return float64(padL) + plotW*float64(i)/float64(n-1)
	}
	step := max(1, n/8)
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), height-8, html.EscapeString(labels[i]))
	}
	for si, s := range ss {
		var pts []string
		for i, v := range s.Values {
			if i >= n {
				break
			}
			y := float64(padT) + plotH
			if top > 0 {
				y -= plotH * v / top
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y))
		}
		fmt.Fprintf(&b, `<polyline class="s%d" points="%s"><title>%s</title></polyline>`, si%5, strings.Join(pts, " "), html.EscapeString(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barChart draws one horizontal bar per label, longest first as given.
func barChart(labels []string, values []float64, format func(float64) string, width int) template.HTML {
	const rowH, labelW, valueW = 22, 190, 90
	height := rowH*len(labels) + 4
	top := 0.0
	for _, v := range values {
		top = math.Max(top, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" xmlns="http://www.w3.org/2000/svg">`, width, height)
	plotW := float64(width - labelW - valueW)
	for i, l := range labels {
		y := i*rowH + 2
		w := 0.0
		if top > 0 {
			w = plotW * values[i] / top
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+15, html.EscapeString(ellipsis(l, 28)))
		fmt.Fprintf(&b, `<rect class="s%d" x="%d" y="%d" width="%.1f" height="%d" rx="2"><title>%s</title></rect>`,
			i%5, labelW, y+3, math.Max(w, 1), rowH-8, html.EscapeString(l))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, float64(labelW)+math.Max(w, 1)+6, y+15, html.EscapeString(format(values[i])))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so axis labels
// read well.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// short prints an axis value: 1.5k, 2M.
func short(v float64) string {
	switch {
	case v >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", v/1e9)) + "G"
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return trimZero(fmt.Sprintf("%.2f", v))
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
