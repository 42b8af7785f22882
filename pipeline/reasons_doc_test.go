package pipeline

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// definedReasons are the string constants named Reason… in the packages that define reasons:
// the controller's (pipeline) and the build pod's contract (builder/buildpod).
func definedReasons(t *testing.T) map[string]string {
	t.Helper()
	reasons := map[string]string{}
	for _, dir := range []string{".", "../builder/buildpod"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				spec, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, name := range spec.Names {
					if !strings.HasPrefix(name.Name, "Reason") || i >= len(spec.Values) {
						continue
					}
					if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						reasons[v] = file + ": " + name.Name
					}
				}
				return true
			})
		}
	}
	if len(reasons) < 20 {
		t.Fatalf("found only %d reasons: the parsing is broken", len(reasons))
	}
	return reasons
}

// docs/reasons.md lists every reason the code defines, once, and no other.
func TestReasonsAreDocumented(t *testing.T) {
	defined := definedReasons(t)
	doc, err := os.ReadFile("../docs/reasons.md")
	if err != nil {
		t.Fatal(err)
	}
	// A reason is documented as the first cell of a table row: | `Reason` | …
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9]+)` \\|")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]]++
	}
	var missing []string
	for r, where := range defined {
		if documented[r] == 0 {
			missing = append(missing, r+" ("+where+")")
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("reason %s is not in docs/reasons.md", m)
	}
	for r, n := range documented {
		if _, ok := defined[r]; !ok {
			t.Errorf("docs/reasons.md documents %s, which the code does not define", r)
		}
		if n > 1 {
			t.Errorf("docs/reasons.md documents %s %d times", r, n)
		}
	}
}
