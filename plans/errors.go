package plans

import (
	"fmt"
	"sort"
	"strings"
)

// ValidationError is one problem in a plan repository, with where it is and
// what was expected.
type ValidationError struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	// Path is the field path, e.g. migrations.legacy-to-eks.steps[2].
	Path string `json:"path,omitempty"`
	Msg  string `json:"message"`

	sels []string // the CUE path, for repair
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one load, sorted by file and position.
type Errors []*ValidationError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			// Errors without a file (whole-repository problems) go last.
			if a.File == "" || b.File == "" {
				return b.File == ""
			}
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Msg < b.Msg
	})
}

// dedupe drops errors that say the same thing at the same place; CUE
// reports one conflict once per side.
func (es Errors) dedupe() Errors {
	seen := map[string]bool{}
	out := es[:0]
	for _, e := range es {
		k := e.Error()
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out
}
