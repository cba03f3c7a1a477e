// Package schema holds the CUE schema of a ferry plan repository and checks
// plan values against it. It knows nothing of the typed model (package
// plans) and does no I/O beyond its embedded files.
package schema

import (
	_ "embed"
	"fmt"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/parser"
)

// Source is the schema's CUE text, as embedded.
//
//go:embed ferry.cue
var Source []byte

// Filename is the name positions inside the schema carry.
const Filename = "schema/ferry.cue"

// Build compiles the schema into ctx and returns #Repository. A CUE context
// grows with every value it holds, so each load uses a fresh one, and the
// schema is parsed and built again for it (about 0.1 ms).
func Build(ctx *cue.Context) (cue.Value, error) {
	// Parsed for every context: building a file records state on its
	// syntax tree, so a tree shared by many contexts grows with each one
	// (a daemon loading a commit every few seconds leaked that way).
	parsed, err := parser.ParseFile(Filename, Source, parser.ParseComments)
	if err != nil {
		return cue.Value{}, fmt.Errorf("parse embedded schema: %w", err)
	}
	v := ctx.BuildFile(parsed)
	if err := v.Err(); err != nil {
		return cue.Value{}, fmt.Errorf("build embedded schema: %w", err)
	}
	return v.LookupPath(cue.ParsePath("#Repository")), nil
}
