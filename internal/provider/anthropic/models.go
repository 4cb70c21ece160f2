package anthropic

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Model families. Anthropic keeps a separate weekly quota per family on
// subscription accounts, so a 429 for one family leaves the others usable.
const (
	FamilyOpus   = "opus"
	FamilySonnet = "sonnet"
	FamilyHaiku  = "haiku"
	FamilyFable  = "fable"
)

// families are the names Family recognises.
var families = []string{FamilyOpus, FamilySonnet, FamilyHaiku, FamilyFable}

// modelName is a model id broken into its lowercase alphanumeric words from
// "claude" on, so that every spelling of one model reads alike:
// claude-opus-4-1-20250805, anthropic/claude-opus-4.1,
// us.anthropic.claude-opus-4-1-20250805-v1:0, claude-opus-4-1@20250805.
// Whatever comes before "claude" (a vendor or region prefix) is dropped.
type modelName []string

// parseModelName splits model; the result is empty when the id does not
// name a Claude model.
func parseModelName(model string) modelName {
	words := strings.FieldsFunc(strings.ToLower(model), func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	})
	for i, w := range words {
		if w == "claude" {
			return words[i+1:]
		}
	}
	return nil
}

// family returns the family word and its position, or ("", -1).
func (n modelName) family() (string, int) {
	for i, w := range n {
		for _, f := range families {
			if w == f {
				return f, i
			}
		}
	}
	return "", -1
}

// version returns the model generation as major and minor numbers. Newer
// ids put it after the family (claude-opus-4-5-20251101 is 4.5,
// claude-opus-4-20250514 is 4.0), older ones before it (claude-3-opus is
// 3.0, claude-3-5-sonnet is 3.5). A date is not a minor version: it has
// eight digits, a minor version one or two. ok is false when the id gives no
// version.
func (n modelName) version() (major, minor int, ok bool) {
	_, at := n.family()
	if at < 0 {
		return 0, 0, false
	}
	read := func(words []string) (int, int, bool) {
		if len(words) == 0 || !isVersionNumber(words[0]) {
			return 0, 0, false
		}
		major, _ := strconv.Atoi(words[0])
		if len(words) > 1 && isVersionNumber(words[1]) {
			minor, _ := strconv.Atoi(words[1])
			return major, minor, true
		}
		return major, 0, true
	}
	if major, minor, ok := read(n[at+1:]); ok {
		return major, minor, true
	}
	return read(n[:at])
}

// isVersionNumber reports whether w is a one- or two-digit number.
func isVersionNumber(w string) bool {
	if len(w) == 0 || len(w) > 2 {
		return false
	}
	for _, c := range w {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Family returns the model family of a Claude model id ("opus", "sonnet",
// "haiku", "fable"), or "" for anything else. Per-family rate limits are
// keyed by it. Vendor and region prefixes ("anthropic/",
// "us.anthropic.") and case are ignored, so a Bedrock or OpenRouter
// spelling lands in the same bucket as the plain id.
func Family(model string) string {
	f, _ := parseModelName(model).family()
	return f
}

// opusForPro is the first Opus generation a Pro plan may use.
var opusForPro = [2]int{4, 5}

// PlanAllows reports whether a subscription on plan may be asked for
// model, so that routing never sends a request the upstream refuses for
// the plan alone. Free plans get no Opus; Pro gets Opus from 4.5 on (an
// Opus id without a readable version is refused, since it cannot be shown
// to be new enough); Max, an unknown plan and "" get everything. Plans are
// read case-insensitively, with or without the profile's "claude_" prefix
// ("claude_pro").
func PlanAllows(plan, model string) bool {
	name := parseModelName(model)
	if f, _ := name.family(); f != FamilyOpus {
		return true
	}
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(plan)), "claude_") {
	case "free":
		return false
	case "pro":
		major, minor, ok := name.version()
		return ok && (major > opusForPro[0] || major == opusForPro[0] && minor >= opusForPro[1])
	}
	return true
}

// ResolveModel applies an account's model list (store.AccountOptions.Models)
// to a requested model. With no list every model is served as requested.
// Otherwise the request must name a listed model, exactly or as its dated
// variant (key "claude-opus-4" serves "claude-opus-4-20250514" but not
// "claude-opus-4-1", a different model); an exact key wins over the dated
// match. upstream is the key's mapped name, or the requested name when the
// mapping is "". ok is false when the account does not serve the model.
func ResolveModel(models map[string]string, requested string) (upstream string, ok bool) {
	if len(models) == 0 {
		return requested, true
	}
	to, found := models[requested]
	if !found {
		base, dated := undated(requested)
		if !dated {
			return "", false
		}
		if to, found = models[base]; !found {
			return "", false
		}
	}
	if to == "" {
		return requested, true
	}
	return to, true
}

// undated strips a trailing "-YYYYMMDD" snapshot date.
func undated(model string) (string, bool) {
	const dateLen = len("-20250514")
	if len(model) <= dateLen || model[len(model)-dateLen] != '-' {
		return model, false
	}
	for _, c := range model[len(model)-dateLen+1:] {
		if c < '0' || c > '9' {
			return model, false
		}
	}
	return model[:len(model)-dateLen], true
}

// Limits of a model list, so that a typo cannot make an unbounded one.
const (
	MaxModels    = 100
	MaxModelName = 200
)

// ParseModels parses the command-line form of a model list:
// comma-separated items, each a model name ("claude-sonnet-4-5", served
// as requested) or a mapping ("claude-opus-4=claude-opus-4-1", served as
// the right-hand name). Spaces around items and names are trimmed and empty
// items skipped, so "a, b," is fine. A repeated name, an empty side of "=",
// a character outside [A-Za-z0-9._:/@-] or more than MaxModels items is an
// error naming the item: a silently dropped entry would route requests
// the admin meant to refuse. An empty spec is a nil map, which serves every
// model.
func ParseModels(spec string) (map[string]string, error) {
	var m map[string]string
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		from, to, mapped := strings.Cut(item, "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if err := checkModelName(from); err != nil {
			return nil, fmt.Errorf("model list item %q: %w", item, err)
		}
		if mapped {
			if err := checkModelName(to); err != nil {
				return nil, fmt.Errorf("model list item %q: target: %w", item, err)
			}
		}
		if _, dup := m[from]; dup {
			return nil, fmt.Errorf("model list item %q: %q is listed twice", item, from)
		}
		if len(m) == MaxModels {
			return nil, fmt.Errorf("model list: more than %d models", MaxModels)
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[from] = to
	}
	return m, nil
}

// checkModelName enforces the characters model ids are made of; anything
// else is a typo or an attempt to smuggle a separator into stored config.
func checkModelName(name string) error {
	switch {
	case name == "":
		return errors.New("empty model name")
	case len(name) > MaxModelName:
		return fmt.Errorf("model name longer than %d bytes", MaxModelName)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:/@-", c)
		if !ok {
			return fmt.Errorf("%q: character %q not allowed in a model name", name, c)
		}
	}
	return nil
}

// FormatModels writes a model list in the form ParseModels reads, sorted by
// name so that the same list always prints the same way.
func FormatModels(models map[string]string) string {
	names := make([]string, 0, len(models))
	for name := range models {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		if to := models[name]; to != "" {
			b.WriteByte('=')
			b.WriteString(to)
		}
	}
	return b.String()
}

// SetModel returns body with its top-level "model" set to model (added if
// absent). Only the model value changes; every other byte stays as the
// client sent it, because a re-encoded body would reorder keys and reformat
// numbers and strings, and the relay promises the upstream the client's
// request. body itself is not modified. It fails when body is not a JSON
// object.
func SetModel(body []byte, model string) ([]byte, error) {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return nil, errors.New("request body is not a JSON object")
	}
	return sjson.SetBytes(body, "model", model)
}
