// Package schema holds the CUE schema of a ferry plan repository and checks
// plan values against it. It knows nothing of the typed model (package
// plans) and does no I/O beyond its embedded files.
package schema

import (
	_ "embed"
	"fmt"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
)

// Source is the schema's CUE text, as embedded.
//
//go:embed ferry.cue
var Source []byte

// Filename is the name positions inside the schema carry.
const Filename = "schema/ferry.cue"

var (
	parseOnce sync.Once
	parsed    *ast.File
	parseErr  error
)

// Build compiles the schema into ctx and returns #Repository. The schema is
// parsed once; it is built per context because a CUE context grows with
// every value it holds, so each load uses a fresh one.
func Build(ctx *cue.Context) (cue.Value, error) {
	parseOnce.Do(func() {
		parsed, parseErr = parser.ParseFile(Filename, Source, parser.ParseComments)
	})
	if parseErr != nil {
		return cue.Value{}, fmt.Errorf("parse embedded schema: %w", parseErr)
	}
	v := ctx.BuildFile(parsed)
	if err := v.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("build embedded schema: %w", err)
	}
	return v.LookupPath(cue.ParsePath("#Repository")), nil
}
