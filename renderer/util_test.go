package renderer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sigsyaml "sigs.k8s.io/yaml"
)

// lineDiff is a go-cmp diff of two texts line by line.
func lineDiff(want, got string) string {
	return cmp.Diff(strings.Split(want, "\n"), strings.Split(got, "\n"))
}

// parsed is a rendered object decoded for inspection.
type parsed struct {
	Object
	m map[string]any
}

func parseObjects(t testing.TB, c *ClusterOutput) []parsed {
	t.Helper()
	var out []parsed
	for _, o := range c.Objects {
		var m map[string]any
		if err := sigsyaml.Unmarshal(o.YAML, &m); err != nil {
			t.Fatalf("cluster %s: %s %s/%s: %v", c.Name, o.Kind, o.Namespace, o.Name, err)
		}
		out = append(out, parsed{o, m})
	}
	return out
}

// dig walks a decoded object.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[p]
		case int:
			l, _ := v.([]any)
			if p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func num(v any) int {
	switch v := v.(type) {
	case float64:
		return int(v)
	case int:
		return v
	case int64:
		return int(v)
	}
	return -1
}

func list(v any) []any { l, _ := v.([]any); return l }
