package redis

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestStoreScriptsComplete reads the package's source: every script made
// with goredis.NewScript must be in storeScripts, which Open loads, or its
// first EVALSHA after a restart costs an extra round trip, and a pipeline
// that sends it fails.
func TestStoreScriptsComplete(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var made, listed []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range spec.Values {
				if call, ok := v.(*ast.CallExpr); ok && isSelector(call.Fun, "goredis", "NewScript") {
					made = append(made, spec.Names[i].Name)
				}
				if lit, ok := v.(*ast.CompositeLit); ok && spec.Names[i].Name == "storeScripts" {
					for _, elt := range lit.Elts {
						if id, ok := elt.(*ast.Ident); ok {
							listed = append(listed, id.Name)
						}
					}
				}
			}
			return true
		})
	}
	slices.Sort(made)
	slices.Sort(listed)
	if len(made) == 0 {
		t.Fatal("found no script in the package's source")
	}
	if !slices.Equal(made, listed) {
		t.Errorf("scripts made: %v\nstoreScripts: %v", made, listed)
	}
}

// isSelector reports whether e is pkg.name.
func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}
