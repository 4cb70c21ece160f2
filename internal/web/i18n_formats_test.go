package web

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The console renders two packages' English formats in Chinese
// (i18n_formats.go). These tests read those formats from the packages'
// source, the way TestEveryMessageHasBothLanguages reads the keys the
// templates use, so a format added or reworded there fails here until
// formatsZH has it.

// TestEveryValidationReasonHasChinese: every invalid(field, format, …)
// call of internal/admin has a Chinese rendering of its format, with the
// same arguments, and a label in both languages for every field it can
// name; and so for notify's channel checks, which admin passes on.
func TestEveryValidationReasonHasChinese(t *testing.T) {
	src := readSource(t, "../admin")
	// Fields the scan cannot follow to a string literal, and why each is
	// fine. A field listed here that the scan no longer meets fails too,
	// so the list cannot go stale.
	unresolved := map[string]string{
		"decode: typ.Field": "a field of the JSON body, named by the client; only the JSON API decodes bodies",
		"decode: f":         "a field the JSON body has that no request knows: it has no label by definition",
	}
	calls := src.invalidCalls(t)
	if len(calls) < 80 {
		t.Fatalf("found only %d invalid(…) calls in internal/admin; the scan is broken", len(calls))
	}
	fields := map[string]string{} // field → where it is named
	seen := map[string]bool{}
	for _, c := range calls {
		checkChinese(t, c.pos, c.format)
		for _, f := range c.fields {
			fields[f] = c.pos
		}
		for _, u := range c.unresolved {
			if _, ok := unresolved[u]; !ok {
				t.Errorf("%s: the field %s cannot be followed to a name; give a literal, or say in this test why not", c.pos, u)
			}
			seen[u] = true
		}
	}
	for u := range unresolved {
		if !seen[u] {
			t.Errorf("the scan no longer meets the field %s; drop it from the list", u)
		}
	}
	notifyCalls := readSource(t, "../notify").invalidCalls(t)
	if len(notifyCalls) < 15 {
		t.Fatalf("found only %d invalid(…) calls in internal/notify; the scan is broken", len(notifyCalls))
	}
	for _, c := range notifyCalls {
		checkChinese(t, c.pos, c.format)
		for _, f := range c.fields {
			fields[f] = c.pos
		}
		for _, u := range c.unresolved {
			t.Errorf("%s: the field %s cannot be followed to a name", c.pos, u)
		}
	}
	if len(fields) < 40 {
		t.Fatalf("found only %d field names; the scan is broken", len(fields))
	}
	for f, pos := range fields {
		if _, ok := catalog["field."+f]; !ok {
			t.Errorf("%s: the field %q has no label (message field.%s)", pos, f, f)
		}
	}
}

// TestEveryAccountTestLineHasChinese: every format the account test
// prints or fails with (internal/relay/accounttest.go, through its
// testWriter's printf, errorf and say) has a Chinese rendering. The
// relay's own test proves no English there bypasses them.
func TestEveryAccountTestLineHasChinese(t *testing.T) {
	formats := accountTestFormats(t)
	if len(formats) < 20 {
		t.Fatalf("found only %d formats in the account test; the scan is broken", len(formats))
	}
	for format, pos := range formats {
		checkChinese(t, pos, format)
	}
}

// checkChinese fails unless the format found at pos is a literal with a
// Chinese rendering that takes the same arguments.
func checkChinese(t *testing.T, pos, format string) {
	t.Helper()
	if format == "" {
		t.Errorf("%s: the format is not a string literal, so it cannot be translated", pos)
		return
	}
	zh, ok := formatsZH[format]
	if !ok {
		t.Errorf("%s: no Chinese for %q", pos, format)
		return
	}
	checkSameArgs(t, pos, format, zh)
}

// TestFormatsZHHasNoStrays: every Chinese rendering is of a format one of
// the scans meets, so a reworded format does not leave its old
// translation behind.
func TestFormatsZHHasNoStrays(t *testing.T) {
	known := accountTestFormats(t)
	for _, dir := range []string{"../admin", "../notify"} {
		for _, c := range readSource(t, dir).invalidCalls(t) {
			known[c.format] = c.pos
		}
	}
	for en := range formatsZH {
		if _, ok := known[en]; !ok {
			t.Errorf("formatsZH has %q, which no scanned source uses", en)
		}
	}
}

// accountTestFormats are the formats of accounttest.go's
// out.printf/errorf/say calls, each with where it is. A call whose format
// is not a literal fails the test: it could not be translated. The bodies
// of testWriter's printf and errorf are left out: they pass their own
// format on to say.
func accountTestFormats(t *testing.T) map[string]string {
	t.Helper()
	src := readSource(t, "../relay", "accounttest.go")
	out := map[string]string{}
	for _, f := range src.funcs() {
		if f.Recv != nil && (f.Name.Name == "printf" || f.Name.Name == "errorf") {
			continue
		}
		ast.Inspect(f.Body, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains([]string{"printf", "errorf", "say"}, sel.Sel.Name) || len(call.Args) == 0 {
				return true
			}
			pos := src.fset.Position(call.Pos()).String()
			if format, ok := stringLit(call.Args[0]); ok {
				out[format] = pos
			} else {
				t.Errorf("%s: the format is not a string literal, so it cannot be translated", pos)
			}
			return true
		})
	}
	return out
}

// source is the parsed non-test Go files of one package directory.
type source struct {
	fset  *token.FileSet
	files []*ast.File
}

// readSource parses dir's non-test Go files, or only the names given.
func readSource(t *testing.T, dir string, only ...string) *source {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	s := &source{fset: token.NewFileSet()}
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasSuffix(base, "_test.go") || (len(only) > 0 && !slices.Contains(only, base)) {
			continue
		}
		f, err := parser.ParseFile(s.fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		s.files = append(s.files, f)
	}
	if len(s.files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return s
}

// invalidCall is one refusal found in the source: where, its format ("" if
// not a literal), the field names it can carry, and the field expressions
// the scan could not follow ("func: expr").
type invalidCall struct {
	pos        string
	format     string
	fields     []string
	unresolved []string
}

// invalidCalls finds every invalid(field, format, …) call and every
// InvalidError literal outside invalid itself.
func (s *source) invalidCalls(t *testing.T) []invalidCall {
	t.Helper()
	var out []invalidCall
	for _, f := range s.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			var body ast.Node = decl
			if ok {
				if fn.Body == nil {
					continue
				}
				body = fn.Body
			}
			ast.Inspect(body, func(node ast.Node) bool {
				switch n := node.(type) {
				case *ast.CallExpr:
					if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "invalid" && len(n.Args) >= 2 {
						c := invalidCall{pos: s.fset.Position(n.Pos()).String()}
						c.format, _ = stringLit(n.Args[1])
						c.fields, c.unresolved = s.fieldNames(fn, n.Args[0], 0)
						out = append(out, c)
					}
				case *ast.CompositeLit:
					// invalid builds them; admin's channelErr hands on
					// notify's, format and all (the notify scan below
					// checks those formats).
					if id, ok := n.Type.(*ast.Ident); ok && id.Name == "InvalidError" &&
						(fn == nil || (fn.Name.Name != "invalid" && fn.Name.Name != "channelErr")) {
						t.Errorf("%s: an InvalidError built by hand keeps no format to translate; use invalid", s.fset.Position(n.Pos()))
					}
				}
				return true
			})
		}
	}
	return out
}

// fieldNames follows a field argument of fn back to the string literals it
// can be: a literal; a parameter of fn, through fn's callers; or a field
// of the element of a range over a table of struct literals.
func (s *source) fieldNames(fn *ast.FuncDecl, e ast.Expr, depth int) (names, unresolved []string) {
	if lit, ok := stringLit(e); ok {
		return []string{lit}, nil
	}
	fail := func() ([]string, []string) {
		name := "(top level)"
		if fn != nil {
			name = fn.Name.Name
		}
		return nil, []string{name + ": " + exprString(e)}
	}
	if fn == nil || depth > 4 {
		return fail()
	}
	switch x := e.(type) {
	case *ast.Ident:
		i := paramIndex(fn, x.Name)
		if i < 0 {
			return fail()
		}
		n := 0
		for _, caller := range s.funcs() {
			ast.Inspect(caller.Body, func(node ast.Node) bool {
				call, ok := node.(*ast.CallExpr)
				if !ok || calleeName(call) != fn.Name.Name || i >= len(call.Args) {
					return true
				}
				n++
				got, bad := s.fieldNames(caller, call.Args[i], depth+1)
				names, unresolved = append(names, got...), append(unresolved, bad...)
				return true
			})
		}
		if n == 0 {
			return fail()
		}
		return names, unresolved
	case *ast.SelectorExpr:
		elems, field, ok := rangeTable(fn, x)
		if !ok {
			return fail()
		}
		for _, el := range elems {
			v := structField(el, field)
			if v == nil {
				return fail()
			}
			got, bad := s.fieldNames(fn, v, depth+1)
			names, unresolved = append(names, got...), append(unresolved, bad...)
		}
		return names, unresolved
	}
	return fail()
}

func (s *source) funcs() []*ast.FuncDecl {
	var out []*ast.FuncDecl
	for _, f := range s.files {
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Body != nil {
				out = append(out, fn)
			}
		}
	}
	return out
}

func calleeName(call *ast.CallExpr) string {
	switch f := call.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

func paramIndex(fn *ast.FuncDecl, name string) int {
	i := 0
	for _, p := range fn.Type.Params.List {
		for _, n := range p.Names {
			if n.Name == name {
				return i
			}
			i++
		}
	}
	return -1
}

// rangeTable finds, for x.field inside fn, a `for _, x := range
// []struct{…}{…}` and returns the table's elements and the field's index
// in the struct (or its name, for keyed elements).
func rangeTable(fn *ast.FuncDecl, sel *ast.SelectorExpr) ([]*ast.CompositeLit, structKey, bool) {
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return nil, structKey{}, false
	}
	var elems []*ast.CompositeLit
	key := structKey{name: sel.Sel.Name, index: -1}
	found := false
	ast.Inspect(fn.Body, func(node ast.Node) bool {
		rs, ok := node.(*ast.RangeStmt)
		if !ok || found {
			return !found
		}
		v, ok := rs.Value.(*ast.Ident)
		if !ok || v.Name != id.Name {
			return true
		}
		table, ok := rs.X.(*ast.CompositeLit)
		if !ok {
			return true
		}
		arr, ok := table.Type.(*ast.ArrayType)
		if !ok {
			return true
		}
		st, ok := arr.Elt.(*ast.StructType)
		if !ok {
			return true
		}
		i := 0
		for _, f := range st.Fields.List {
			for _, n := range f.Names {
				if n.Name == sel.Sel.Name {
					key.index = i
				}
				i++
			}
		}
		for _, el := range table.Elts {
			if cl, ok := el.(*ast.CompositeLit); ok {
				elems = append(elems, cl)
			}
		}
		found = key.index >= 0 && len(elems) == len(table.Elts)
		return !found
	})
	return elems, key, found
}

// structKey names a field of a struct literal by name and position.
type structKey struct {
	name  string
	index int
}

func structField(cl *ast.CompositeLit, k structKey) ast.Expr {
	for i, el := range cl.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == k.name {
				return kv.Value
			}
			continue
		}
		if i == k.index {
			return el
		}
	}
	return nil
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	}
	return fmt.Sprintf("%T", e)
}

// checkSameArgs fails when zh does not take the arguments en takes: a
// different number of verbs, or, rendered with the same arguments, a
// complaint of fmt (%!) or an argument en shows and zh leaves out. zh may
// reorder them with explicit indexes (%[2]s).
func checkSameArgs(t *testing.T, pos, en, zh string) {
	t.Helper()
	ev, zv := verbs(en), verbs(zh)
	if len(ev) != len(zv) {
		t.Errorf("%s: %q has %d verbs, its Chinese %q has %d", pos, en, len(ev), zh, len(zv))
		return
	}
	args := make([]any, len(ev))
	want := make([]string, len(ev))
	for i, v := range ev {
		switch v[len(v)-1] {
		case 'd':
			args[i] = 7001 + i
		case 'f':
			args[i] = 70.25 + float64(i)
		default:
			args[i] = fmt.Sprintf("‹arg%d›", i)
		}
		want[i] = fmt.Sprintf("%"+v, args[i])
	}
	got := fmt.Sprintf(zh, args...)
	if strings.Contains(got, "%!") || strings.Contains(fmt.Sprintf(en, args...), "%!") {
		t.Errorf("%s: %q / %q do not render with the same arguments: %q", pos, en, zh, got)
		return
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: the Chinese %q leaves out or changes an argument of %q (want %q in %q)", pos, zh, en, w, got)
		}
	}
}

// verbs lists the verbs of a format with their flags, width and
// precision but not their argument index ("%[2].1f" is ".1f"); %% is left
// out.
func verbs(format string) []string {
	var out []string
	rs := []rune(format)
	for i := 0; i < len(rs); i++ {
		if rs[i] != '%' {
			continue
		}
		i++
		var spec []rune
		for i < len(rs) && strings.ContainsRune("+-# 0123456789.[]*", rs[i]) {
			spec = append(spec, rs[i])
			i++
		}
		if i < len(rs) && rs[i] != '%' {
			spec = append(spec, rs[i])
			// Drop an explicit index: it says which argument, not how.
			s := string(spec)
			for {
				open, close := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
				if open < 0 || close < open {
					break
				}
				s = s[:open] + s[close+1:]
			}
			out = append(out, s)
		}
	}
	return out
}
