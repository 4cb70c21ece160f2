package fakeupstream

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"

	"github.com/tidwall/gjson"
)

// geminiSchemaDepth bounds how deep geminiJSONText follows nested schemas,
// so a self-similar or hostile schema cannot make the fake loop.
const geminiSchemaDepth = 8

// geminiSampleLimit bounds the answer's size: nested arrays multiply, so
// past this many bytes every further value is null.
const geminiSampleLimit = 64 << 10

// geminiSampleText is the value of every generated string.
const geminiSampleText = "fake answer"

// geminiJSONText is the answer to a JSON-mode request: a JSON document that
// fits the response schema closely enough for a client that checks it.
// Gemini CLI's model router depends on this: it sends a schema with
// required complexity_reasoning (string) and complexity_score (integer
// 1–100) and retries for over a minute when the answer does not parse.
// Both JSON Schema (responseJsonSchema, lowercase types) and the OpenAPI
// subset (responseSchema, types like "OBJECT") are understood. Every listed
// property is filled, so required ones are; enum and const pick their first
// value, numbers respect minimum and maximum (1 by default, inside them),
// strings minLength, arrays minItems (at least one item unless maxItems is
// 0). A missing schema answers {}.
func geminiJSONText(schema gjson.Result) string {
	var buf bytes.Buffer
	geminiWriteSample(&buf, schema, 0)
	return buf.String()
}

func geminiWriteSample(buf *bytes.Buffer, s gjson.Result, depth int) {
	if !s.IsObject() {
		if depth == 0 {
			buf.WriteString("{}")
		} else {
			buf.WriteString(`"` + geminiSampleText + `"`)
		}
		return
	}
	if depth > geminiSchemaDepth || buf.Len() > geminiSampleLimit {
		buf.WriteString("null")
		return
	}
	if c := s.Get("const"); c.Exists() {
		buf.WriteString(c.Raw)
		return
	}
	if e := s.Get("enum"); e.IsArray() && len(e.Array()) > 0 {
		buf.WriteString(e.Array()[0].Raw)
		return
	}
	for _, alt := range []string{"anyOf", "oneOf", "allOf"} {
		if a := s.Get(alt); a.IsArray() && len(a.Array()) > 0 {
			geminiWriteSample(buf, a.Array()[0], depth+1)
			return
		}
	}
	switch geminiSchemaType(s) {
	case "object":
		geminiWriteObject(buf, s, depth)
	case "array":
		n := max(1, int(s.Get("minItems").Int()))
		if mi := s.Get("maxItems"); mi.Exists() {
			n = min(n, int(mi.Int()))
		}
		n = min(n, 16)
		buf.WriteByte('[')
		for i := 0; i < n; i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			geminiWriteSample(buf, s.Get("items"), depth+1)
		}
		buf.WriteByte(']')
	case "integer":
		buf.WriteString(geminiFormatNumber(geminiSchemaNumber(s, true)))
	case "number":
		buf.WriteString(geminiFormatNumber(geminiSchemaNumber(s, false)))
	case "boolean":
		buf.WriteString("true")
	case "null":
		buf.WriteString("null")
	default:
		text := geminiSampleText
		if n := int(s.Get("minLength").Int()); n > len(text) {
			text += strings.Repeat("x", min(n, 4096)-len(text))
		}
		b, _ := json.Marshal(text)
		buf.Write(b)
	}
}

func geminiWriteObject(buf *bytes.Buffer, s gjson.Result, depth int) {
	buf.WriteByte('{')
	seen := map[string]bool{}
	writeProp := func(name string, sub gjson.Result) {
		if seen[name] {
			return
		}
		if len(seen) > 0 {
			buf.WriteByte(',')
		}
		seen[name] = true
		k, _ := json.Marshal(name)
		buf.Write(k)
		buf.WriteByte(':')
		geminiWriteSample(buf, sub, depth+1)
	}
	props := s.Get("properties")
	props.ForEach(func(k, v gjson.Result) bool {
		writeProp(k.String(), v)
		return true
	})
	// A required name without a property schema still gets a value.
	s.Get("required").ForEach(func(_, v gjson.Result) bool {
		if v.Type == gjson.String {
			writeProp(v.Str, props.Get(gjson.Escape(v.Str)))
		}
		return true
	})
	buf.WriteByte('}')
}

// geminiSchemaType is the schema's type in lowercase; a list of types gives its
// first non-null member, and a typeless schema with properties is an
// object.
func geminiSchemaType(s gjson.Result) string {
	t := s.Get("type")
	if t.IsArray() {
		for _, x := range t.Array() {
			if !strings.EqualFold(x.String(), "null") {
				return strings.ToLower(x.String())
			}
		}
		return "null"
	}
	if t.Exists() {
		return strings.ToLower(t.String())
	}
	if s.Get("properties").Exists() {
		return "object"
	}
	if s.Get("items").Exists() {
		return "array"
	}
	return "string"
}

// geminiSchemaNumber is 1 moved inside [minimum, maximum].
func geminiSchemaNumber(s gjson.Result, integer bool) float64 {
	v := 1.0
	if lo := s.Get("minimum"); lo.Exists() && v < lo.Float() {
		v = lo.Float()
		if integer {
			v = math.Ceil(v)
		}
	}
	if hi := s.Get("maximum"); hi.Exists() && v > hi.Float() {
		v = hi.Float()
		if integer {
			v = math.Floor(v)
		}
	}
	return v
}

func geminiFormatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "0"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
