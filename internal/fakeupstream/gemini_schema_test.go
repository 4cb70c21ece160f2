package fakeupstream

import (
	"testing"

	"github.com/tidwall/gjson"
)

func TestGeminiJSONText(t *testing.T) {
	for _, tc := range []struct {
		name, schema, want string
	}{
		{"no schema", ``, `{}`},
		{"router (OpenAPI types)", geminiRouterSchema, `{"complexity_reasoning":"fake answer","complexity_score":1}`},
		{"router (JSON Schema)", `{"type":"object","properties":{"reasoning":{"type":"string"},"model_choice":{"type":"string","enum":["flash","pro"]}},"required":["reasoning","model_choice"]}`,
			`{"reasoning":"fake answer","model_choice":"flash"}`},
		{"bounds", `{"type":"object","properties":{"a":{"type":"integer","minimum":5.5},"b":{"type":"number","maximum":0.25},"c":{"type":"integer","minimum":-3,"maximum":-2}}}`,
			`{"a":6,"b":0.25,"c":-2}`},
		{"nested", `{"type":"object","properties":{"list":{"type":"array","items":{"type":"object","properties":{"ok":{"type":"boolean"}}},"minItems":2}}}`,
			`{"list":[{"ok":true},{"ok":true}]}`},
		{"empty array allowed", `{"type":"array","maxItems":0,"items":{"type":"string"}}`, `[]`},
		{"nullable type list", `{"type":["null","string"],"minLength":12}`, `"fake answerx"`},
		{"anyOf and const", `{"type":"object","properties":{"x":{"anyOf":[{"type":"integer"},{"type":"string"}]},"y":{"const":{"k":1}}}}`,
			`{"x":1,"y":{"k":1}}`},
		{"required without a property schema", `{"type":"object","required":["who"]}`, `{"who":"fake answer"}`},
		{"typeless with properties", `{"properties":{"n":{"type":"NUMBER"}}}`, `{"n":1}`},
		{"names that need escaping", `{"type":"object","properties":{"a.b":{"type":"string"},"q\"":{"type":"null"}},"required":["a.b"]}`,
			`{"a.b":"fake answer","q\"":null}`},
	} {
		got := geminiJSONText(gjson.Parse(tc.schema))
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		if !gjson.Valid(got) {
			t.Errorf("%s: invalid JSON %s", tc.name, got)
		}
	}
	// A self-nesting schema ends at the depth limit instead of growing.
	deep := `{"type":"object","properties":{"n":` + `{"type":"object","properties":{"n":`
	for range 20 {
		deep += `{"type":"object","properties":{"n":`
	}
	deep += `{"type":"string"}`
	for range 22 {
		deep += `}}`
	}
	if got := geminiJSONText(gjson.Parse(deep)); !gjson.Valid(got) || len(got) > 200 {
		t.Errorf("deep schema: %s", got)
	}
	// Nested arrays multiply; the answer stays bounded.
	wide := `{"type":"string"}`
	for range 8 {
		wide = `{"type":"array","minItems":16,"items":` + wide + `}`
	}
	if got := geminiJSONText(gjson.Parse(wide)); !gjson.Valid(got) || len(got) > geminiSampleLimit+1024 {
		t.Errorf("wide schema: %d bytes, valid %v", len(got), gjson.Valid(got))
	}
}

// FuzzGeminiJSONText: whatever schema a client sends, the answer is valid
// JSON (the fake must never send a JSON-mode client broken JSON).
func FuzzGeminiJSONText(f *testing.F) {
	f.Add(geminiRouterSchema)
	f.Add(`{"type":"array","items":{"enum":[1,"a",null]},"minItems":99999999}`)
	f.Add(`{"type":"integer","minimum":1e400}`)
	f.Add(`{"type":"string","minLength":-5}`)
	f.Add(`{"anyOf":[],"oneOf":[true]}`)
	f.Fuzz(func(t *testing.T, schema string) {
		if !gjson.Valid(schema) {
			return
		}
		if got := geminiJSONText(gjson.Parse(schema)); !gjson.Valid(got) {
			t.Fatalf("schema %s gave invalid JSON %s", schema, got)
		}
	})
}
