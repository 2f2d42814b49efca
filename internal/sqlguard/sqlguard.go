// Package sqlguard finds SQL built from values in Go source: the SQL argument
// of a ClickHouse call must be made of string literals and identifiers only,
// never fmt.Sprintf or a literal that opens a quoted value and is then
// concatenated with a variable. Values go through the driver's binding (? or
// clickhouse.Named); identifiers come from our own code. The project's test
// runs it over the whole tree.
package sqlguard

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
)

// sqlMethods are the calls whose first string argument is SQL.
var sqlMethods = map[string]bool{"Exec": true, "Query": true, "QueryRow": true, "PrepareBatch": true, "Select": true, "AsyncInsert": true}

// Violation is one place that builds SQL from a value.
type Violation struct {
	Pos    token.Position
	Reason string
}

func (v Violation) String() string { return fmt.Sprintf("%s: %s", v.Pos, v.Reason) }

// CheckTree checks every non-test .go file under root.
func CheckTree(root string) ([]Violation, error) {
	var out []Violation
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		vs, err := CheckFile(path, nil)
		out = append(out, vs...)
		return err
	})
	return out, err
}

// CheckFile checks one file; src, when not nil, is its content.
func CheckFile(path string, src any) ([]Violation, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, 0)
	if err != nil {
		return nil, err
	}
	var out []Violation
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !sqlMethods[sel.Sel.Name] {
			return true
		}
		for _, arg := range call.Args {
			if reason := unsafeSQL(arg); reason != "" {
				out = append(out, Violation{Pos: fset.Position(arg.Pos()), Reason: sel.Sel.Name + ": " + reason})
			}
		}
		return true
	})
	return out, nil
}

// unsafeSQL explains why expr builds SQL from a value, or returns "".
func unsafeSQL(expr ast.Expr) string {
	switch e := expr.(type) {
	case *ast.CallExpr:
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "fmt" && strings.HasPrefix(sel.Sel.Name, "Sprint") && len(e.Args) > 0 && looksLikeSQL(e.Args[0]) {
				return "SQL formatted with fmt." + sel.Sel.Name + ": bind values with ? instead"
			}
		}
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return ""
		}
		if lit, ok := e.X.(*ast.BasicLit); ok && lit.Kind == token.STRING && opensValue(lit.Value) {
			if _, isLit := e.Y.(*ast.BasicLit); !isLit {
				return "a quoted value is concatenated into SQL: bind it with ? instead"
			}
		}
		if r := unsafeSQL(e.X); r != "" {
			return r
		}
		if lit, ok := rightmostLiteral(e.X); ok && opensValue(lit) {
			if _, isLit := e.Y.(*ast.BasicLit); !isLit {
				return "a quoted value is concatenated into SQL: bind it with ? instead"
			}
		}
		return unsafeSQL(e.Y)
	}
	return ""
}

func rightmostLiteral(expr ast.Expr) (string, bool) {
	switch e := expr.(type) {
	case *ast.BasicLit:
		return e.Value, e.Kind == token.STRING
	case *ast.BinaryExpr:
		return rightmostLiteral(e.Y)
	}
	return "", false
}

// opensValue reports whether a SQL literal ends where a value would follow:
// an open quote, or a comparison or keyword that takes a value.
func opensValue(lit string) bool {
	s := strings.TrimRight(strings.Trim(lit, "`\""), " \n\t")
	upper := strings.ToUpper(s)
	for _, end := range []string{"'", "=", "<", ">", " IN", " IN (", " IN(", " LIKE", " LIMIT", " AND", " OR", " VALUES", " VALUES (", " VALUES("} {
		if strings.HasSuffix(upper, end) {
			return true
		}
	}
	return false
}

func looksLikeSQL(expr ast.Expr) bool {
	lit, ok := expr.(*ast.BasicLit)
	if !ok {
		return false
	}
	upper := strings.ToUpper(lit.Value)
	for _, kw := range []string{"SELECT", "INSERT", "WHERE", "ALTER", "DELETE", "CREATE", "DROP"} {
		if strings.Contains(upper, kw) {
			return true
		}
	}
	return false
}
