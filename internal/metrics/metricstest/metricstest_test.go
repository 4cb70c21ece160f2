package metricstest

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	s, err := Parse(strings.NewReader(`# HELP a_total help
# TYPE a_total counter
a_total{route="POST /x",q="say \"hi\"\\n"} 3
a_total{route="GET /y"} 4 1700000000000
b 2.5e-3
c{} +Inf
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 4 || s.Sum("a_total") != 7 || s.Sum("a_total", "route", "POST /x", "q", `say "hi"\n`) != 3 ||
		s.Sum("b") != 0.0025 || s.Has("a_total", "route", "nope") || !s.Has("c") {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{"x{a=\"1\" 2", "x{a=1} 2", "x", "x notanumber"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
