package anthropic

import (
	"bytes"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestFamily(t *testing.T) {
	cases := map[string]string{
		"claude-3-5-sonnet-20241022":                   FamilySonnet,
		"claude-sonnet-4-5-20250929":                   FamilySonnet,
		"claude-opus-4-1":                              FamilyOpus,
		"claude-haiku-4-5":                             FamilyHaiku,
		"claude-3-haiku-20240307":                      FamilyHaiku,
		"claude-3-opus-20240229":                       FamilyOpus,
		"claude-opus-5-5":                              FamilyOpus,
		"claude-opus-4-8[1m]":                          FamilyOpus,
		"claude-fable-1":                               FamilyFable,
		"CLAUDE-OPUS-4-5":                              FamilyOpus,
		"anthropic/claude-sonnet-4.5":                  FamilySonnet,
		"us.anthropic.claude-3-5-sonnet-20241022-v2:0": FamilySonnet,
		"anthropic.claude-opus-4-1-20250805-v1:0":      FamilyOpus,
		"claude-3-5-haiku@20241022":                    FamilyHaiku,
		"claude-2.1":                                   "",
		"claude-instant-1":                             "",
		"gpt-4o":                                       "",
		"opus":                                         "", // not a Claude model id
		"my-sonnet-model":                              "",
		"claudette-opus":                               "", // "claude" must be a word of its own
		"claude-sonnetish-4":                           "",
		"":                                             "",
	}
	for model, want := range cases {
		if got := Family(model); got != want {
			t.Errorf("Family(%q) = %q, want %q", model, got, want)
		}
	}
}

func TestPlanAllows(t *testing.T) {
	models := []string{
		"claude-opus-4",                              // 0
		"claude-opus-4-20250514",                     // 1
		"claude-opus-4-1",                            // 2
		"claude-opus-4-1-20250805",                   // 3
		"claude-3-opus-20240229",                     // 4
		"claude-opus-4-5",                            // 5
		"claude-opus-4-5-20251101",                   // 6
		"claude-opus-4-6",                            // 7
		"claude-opus-4-8[1m]",                        // 8
		"claude-opus-5",                              // 9
		"claude-opus-5-5",                            // 10
		"anthropic/claude-opus-4.5",                  // 11
		"anthropic/claude-opus-4.1",                  // 12
		"claude-opus-latest",                         // 13: no readable version
		"claude-sonnet-4-5-20250929",                 // 14
		"claude-haiku-4-5",                           // 15
		"claude-3-5-sonnet-20241022",                 // 16
		"gpt-4o",                                     // 17
		"us.anthropic.claude-opus-4-1-20250805-v1:0", // 18
		"claude-opus-10-1",                           // 19
	}
	// want[plan] lists, by index into models, what the plan refuses.
	refused := map[string][]int{
		"max":        nil,
		"":           nil,
		"team":       nil, // unknown plans get everything
		"free":       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 19},
		"FREE":       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 19},
		"pro":        {0, 1, 2, 3, 4, 12, 13, 18},
		"claude_pro": {0, 1, 2, 3, 4, 12, 13, 18},
		"claude_max": nil,
	}
	for plan, no := range refused {
		for i, model := range models {
			want := true
			for _, j := range no {
				if i == j {
					want = false
				}
			}
			if got := PlanAllows(plan, model); got != want {
				t.Errorf("PlanAllows(%q, %q) = %v, want %v", plan, model, got, want)
			}
		}
	}
}

func TestResolveModel(t *testing.T) {
	list := map[string]string{
		"claude-opus-4":              "",
		"claude-opus-4-20250514":     "claude-opus-4-1-20250805", // exact key beats the dated match
		"claude-sonnet-4-5":          "",
		"claude-haiku-4-5":           "claude-sonnet-4-5-20250929",
		"claude-3-5-sonnet-20241022": "",
	}
	cases := []struct {
		models    map[string]string
		requested string
		upstream  string
		ok        bool
	}{
		{nil, "anything-at-all", "anything-at-all", true},
		{map[string]string{}, "claude-opus-4-1", "claude-opus-4-1", true},
		{list, "claude-opus-4", "claude-opus-4", true},
		{list, "claude-opus-4-20250514", "claude-opus-4-1-20250805", true},
		{list, "claude-opus-4-20250601", "claude-opus-4-20250601", true}, // dated variant, sent as requested
		{list, "claude-opus-4-1", "", false},                             // a different model, not a dated variant
		{list, "claude-opus-4-1-20250805", "", false},
		{list, "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929", true},
		{list, "claude-haiku-4-5", "claude-sonnet-4-5-20250929", true},
		{list, "claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929", true},
		{list, "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022", true},
		{list, "claude-3-5-sonnet", "", false}, // keys are not prefixes the other way round
		{list, "claude-opus-4-2025051", "", false},
		{list, "claude-opus-4-2025051x", "", false},
		{list, "claude-opus-4-202505140", "", false},
		{list, "claude-opus-420250514", "", false},
		{list, "Claude-Opus-4", "", false}, // ids are case-sensitive upstream
		{list, "", "", false},
		{list, "-20250514", "", false},
	}
	for _, c := range cases {
		up, ok := ResolveModel(c.models, c.requested)
		if up != c.upstream || ok != c.ok {
			t.Errorf("ResolveModel(%v, %q) = %q, %v; want %q, %v", c.models, c.requested, up, ok, c.upstream, c.ok)
		}
	}
}

func TestParseModels(t *testing.T) {
	cases := []struct {
		spec string
		want map[string]string
	}{
		{"", nil},
		{" , ,", nil},
		{"claude-opus-4", map[string]string{"claude-opus-4": ""}},
		{" a , b,from = to ,", map[string]string{"a": "", "b": "", "from": "to"}},
		{"anthropic/claude-opus-4.5@x:y_z=us.anthropic.claude-opus-4-5-20251101-v1:0",
			map[string]string{"anthropic/claude-opus-4.5@x:y_z": "us.anthropic.claude-opus-4-5-20251101-v1:0"}},
	}
	for _, c := range cases {
		got, err := ParseModels(c.spec)
		if err != nil {
			t.Errorf("ParseModels(%q): %v", c.spec, err)
			continue
		}
		if !maps.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("ParseModels(%q) = %v, want %v", c.spec, got, c.want)
		}
	}

	many := make([]string, MaxModels)
	for i := range many {
		many[i] = "m" + strconv.Itoa(i)
	}
	if m, err := ParseModels(strings.Join(many, ",")); err != nil || len(m) != MaxModels {
		t.Errorf("%d models: len %d, err %v; want all accepted", MaxModels, len(m), err)
	}

	bad := []struct{ spec, why string }{
		{"a,b,a", "duplicate"},
		{"a=x,a", "duplicate with and without mapping"},
		{"a, a ", "duplicate after trimming"},
		{"=b", "empty source"},
		{"a=", "empty target"},
		{"a = ", "blank target"},
		{"a=b=c", "second ="},
		{"claude opus", "space inside a name"},
		{"claude-opus-4-8[1m]", "brackets"},
		{"a;b", "semicolon"},
		{"a=b\nc", "newline inside a target"},
		{"ü", "non-ASCII"},
		{strings.Repeat("x", MaxModelName+1), "too long"},
		{strings.Join(many, ",") + ",one-more", "too many"},
	}
	for _, b := range bad {
		if m, err := ParseModels(b.spec); err == nil {
			t.Errorf("ParseModels(%q) (%s) = %v, want an error", b.spec, b.why, m)
		}
	}
}

func TestFormatModelsRoundTrip(t *testing.T) {
	lists := []map[string]string{
		nil,
		{},
		{"b": "", "a": "x", "c": "claude-opus-4-1-20250805"},
		{"claude-opus-4": "", "anthropic/claude-3.5@v:1": "z"},
	}
	for _, m := range lists {
		s := FormatModels(m)
		back, err := ParseModels(s)
		if err != nil {
			t.Fatalf("ParseModels(FormatModels(%v) = %q): %v", m, s, err)
		}
		if !maps.Equal(back, m) {
			t.Errorf("round trip of %v via %q = %v", m, s, back)
		}
	}
	if got, want := FormatModels(map[string]string{"b": "", "a": "x", "c": "d"}), "a=x,b,c=d"; got != want {
		t.Errorf("FormatModels = %q, want %q (sorted)", got, want)
	}
}

func TestSetModel(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"replace, keep everything else",
			`{ "stream":true,"model" : "claude-opus-4" ,"max_tokens":1.0e3,"metadata":{"model":"inner"},"x":"\u00e9"}`,
			`{ "stream":true,"model" : "claude-opus-4-1-20250805" ,"max_tokens":1.0e3,"metadata":{"model":"inner"},"x":"\u00e9"}`},
		{"nested model first is not touched",
			`{"metadata":{"model":"inner"},"messages":[{"model":"m"}],"model":"a"}`,
			`{"metadata":{"model":"inner"},"messages":[{"model":"m"}],"model":"claude-opus-4-1-20250805"}`},
		{"added when absent",
			`{"max_tokens":10}`,
			`{"max_tokens":10,"model":"claude-opus-4-1-20250805"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []byte(c.body)
			orig := bytes.Clone(in)
			got, err := SetModel(in, "claude-opus-4-1-20250805")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if !bytes.Equal(in, orig) {
				t.Errorf("input modified: %s", in)
			}
		})
	}

	got, err := SetModel([]byte(`{"model":"a"}`), `we"ird\name`)
	if err != nil || gjson.GetBytes(got, "model").String() != `we"ird\name` || !gjson.ValidBytes(got) {
		t.Errorf("escaping: %s, %v", got, err)
	}

	for _, body := range []string{``, `[1,2]`, `"model"`, `{"model":`, `null`} {
		if out, err := SetModel([]byte(body), "m"); err == nil {
			t.Errorf("SetModel(%q) = %s, want an error", body, out)
		}
	}
}

// FuzzParseModels checks that whatever ParseModels accepts formats and
// parses back to the same list.
func FuzzParseModels(f *testing.F) {
	f.Add("a,b,from=to")
	f.Add(" x = y , ,z")
	f.Add("a=b=c")
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseModels(spec)
		if err != nil {
			return
		}
		back, err := ParseModels(FormatModels(m))
		if err != nil || !maps.Equal(back, m) {
			t.Fatalf("%q → %v → %q → %v, %v", spec, m, FormatModels(m), back, err)
		}
	})
}
