package plans

import (
	"fmt"
	"regexp"
	"strings"

	"cuelang.org/go/cue"
)

var (
	reOutOfBound = regexp.MustCompile(`^invalid value (.+) \(out of bound (.+)\)$`)
	reConflict   = regexp.MustCompile(`^conflicting values (.+) and (.+?)(?: \(mismatched types (\S+) and (\S+)\))?$`)
	reIncomplete = regexp.MustCompile(`^incomplete value (.+)$`)
)

// Known regular expressions of the schema, said in words.
var patterns = map[string]string{
	`=~"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"`:            "a DNS-1123 label (lower-case letters, digits and '-')",
	`=~"^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"`: `a duration such as "90s", "10m" or "1h30m"`,
	`=~"^[^/]+/[^/]+$"`:                              `a service named "namespace/name"`,
	`=~"^https?://"`:                                 "an http:// or https:// URL",
}

// bestMessage picks, among the messages CUE gave for one path, the one
// that tells the user most, and says it in words.
func bestMessage(msgs []string, path []string, data, repoSchema cue.Value) string {
	for _, m := range msgs {
		if strings.HasPrefix(m, "field is required but not present") {
			return msgRequired
		}
	}
	if alt := enumAlternatives(path, repoSchema); alt != "" {
		if seen := valueAt(data, path); seen != "" {
			return fmt.Sprintf("%s is not allowed; expected one of %s", seen, alt)
		}
	}
	// The first message that is not a summary and not a clash with the
	// schema's default (which says nothing of the value), else the first
	// clash.
	best := ""
	for _, m := range msgs {
		if strings.Contains(m, "errors in empty disjunction") {
			continue
		}
		if !reConflict.MatchString(m) {
			best = m
			break
		}
		if best == "" {
			best = m
		}
	}
	if best == "" {
		best = msgs[0]
	}
	return humanize(best, path, data, repoSchema)
}

// humanize rewrites a CUE error message to say the value seen and what was
// expected.
func humanize(msg string, path []string, data, repoSchema cue.Value) string {
	if strings.Contains(msg, "errors in empty disjunction") || strings.HasPrefix(msg, "conflicting values") && data.Exists() {
		if alt := enumAlternatives(path, repoSchema); alt != "" {
			if seen := valueAt(data, path); seen != "" {
				return fmt.Sprintf("%s is not allowed; expected one of %s", seen, alt)
			}
		}
	}
	if m := reOutOfBound.FindStringSubmatch(msg); m != nil {
		if words, ok := patterns[m[2]]; ok {
			return fmt.Sprintf("%s is not %s", m[1], words)
		}
		return fmt.Sprintf("%s is out of range; expected %s", m[1], m[2])
	}
	if m := reConflict.FindStringSubmatch(msg); m != nil && m[3] != "" {
		return fmt.Sprintf("%s is a %s; expected %s", m[2], m[4], m[1])
	}
	if m := reIncomplete.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("no value given; expected %s", m[1])
	}
	switch {
	case msg == "field not allowed":
		if len(path) > 0 {
			return fmt.Sprintf("unknown field %q%s", strings.Trim(path[len(path)-1], `"`), fieldHint(path, repoSchema))
		}
	case strings.HasPrefix(msg, "field is required but not present"):
		return msgRequired
	}
	return msg
}

// fieldHint lists the fields allowed next to an unknown one.
func fieldHint(path []string, repoSchema cue.Value) string {
	if !repoSchema.Exists() || len(path) < 2 {
		return ""
	}
	parent := schemaAt(repoSchema, path[:len(path)-1])
	if !parent.Exists() {
		return ""
	}
	it, err := parent.Fields(cue.Optional(true))
	if err != nil {
		return ""
	}
	var names []string
	for it.Next() {
		names = append(names, it.Selector().Unquoted())
	}
	if len(names) == 0 {
		return ""
	}
	return "; expected one of " + strings.Join(names, ", ")
}

// schemaAt walks the schema along a data path, following pattern
// constraints ([Name=string]: ...) and list elements.
func schemaAt(v cue.Value, path []string) cue.Value {
	for _, sel := range path {
		if isIndex(sel) {
			v = v.LookupPath(cue.MakePath(cue.AnyIndex))
			continue
		}
		name := strings.Trim(sel, `"`)
		if f := v.LookupPath(cue.MakePath(cue.Str(name))); f.Exists() {
			v = f
			continue
		}
		if f := v.LookupPath(cue.MakePath(cue.Str(name).Optional())); f.Exists() {
			v = f
			continue
		}
		if f := v.LookupPath(cue.MakePath(cue.Str(name).Required())); f.Exists() {
			v = f
			continue
		}
		v = v.LookupPath(cue.MakePath(cue.AnyString))
	}
	return v
}

const msgRequired = "required field is missing"

// firstAlternative is the first string of an enum in the schema, or "".
func firstAlternative(path []string, repoSchema cue.Value) string {
	alt := enumAlternatives(path, repoSchema)
	first, _, _ := strings.Cut(alt, ", ")
	return strings.Trim(first, `"`)
}

// enumAlternatives lists the string literals of a disjunction in the schema,
// or "" when the field is not an enum.
func enumAlternatives(path []string, repoSchema cue.Value) string {
	if !repoSchema.Exists() {
		return ""
	}
	v := schemaAt(repoSchema, path)
	op, args := v.Expr()
	if op == cue.SelectorOp || op == cue.NoOp {
		op, args = cue.Dereference(v).Expr()
	}
	if op != cue.OrOp {
		return ""
	}
	var alts []string
	for _, a := range args {
		s, err := a.String()
		if err != nil {
			return ""
		}
		alts = append(alts, fmt.Sprintf("%q", s))
	}
	return strings.Join(alts, ", ")
}

func valueAt(data cue.Value, path []string) string {
	v := data.LookupPath(makePath(path))
	if !v.Exists() {
		return ""
	}
	if s, err := v.String(); err == nil {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}
