// Package metricstest reads a Prometheus text exposition back into numbers,
// so tests can scrape /metrics through the real handler and assert how far
// a counter or histogram moved.
package metricstest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Sample is one line of the exposition: a series and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples is a whole scrape.
type Samples []Sample

// Sum adds the values of every series called name whose labels include
// the given pairs (name, value, name, value…); series with more labels
// match too, so Sum("crs_tokens_total", "class", "input") totals every
// model.
func (s Samples) Sum(name string, labels ...string) float64 {
	var total float64
	for _, x := range s {
		if x.Name == name && x.has(labels) {
			total += x.Value
		}
	}
	return total
}

// Has reports whether any series called name with the given labels exists.
func (s Samples) Has(name string, labels ...string) bool {
	for _, x := range s {
		if x.Name == name && x.has(labels) {
			return true
		}
	}
	return false
}

func (x Sample) has(labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if x.Labels[labels[i]] != labels[i+1] {
			return false
		}
	}
	return true
}

// Parse reads the text exposition format. Comments and blank lines are
// skipped; timestamps after the value are ignored.
func Parse(r io.Reader) (Samples, error) {
	var out Samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseLine(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		var err error
		if rest, err = parseLabels(rest[1:], s.Labels); err != nil {
			return s, err
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// parseLabels reads name="value" pairs up to the closing brace and
// returns what follows it.
func parseLabels(in string, into map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if in == "" {
			return "", fmt.Errorf("unterminated labels")
		}
		if in[0] == '}' {
			return in[1:], nil
		}
		eq := strings.IndexByte(in, '=')
		if eq < 0 || eq+1 >= len(in) || in[eq+1] != '"' {
			return "", fmt.Errorf("bad label at %q", in)
		}
		name := in[:eq]
		in = in[eq+2:]
		var v strings.Builder
		for {
			if in == "" {
				return "", fmt.Errorf("unterminated label value")
			}
			c := in[0]
			in = in[1:]
			if c == '"' {
				break
			}
			if c == '\\' && in != "" {
				switch in[0] {
				case 'n':
					v.WriteByte('\n')
				default:
					v.WriteByte(in[0])
				}
				in = in[1:]
				continue
			}
			v.WriteByte(c)
		}
		into[name] = v.String()
	}
}

// Scrape gets url (with the bearer token, when not empty), fails the test
// unless it answers 200, and parses the answer.
func Scrape(tb testing.TB, url, token string) Samples {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		tb.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	s, err := Parse(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return s
}
