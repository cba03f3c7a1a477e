package plans

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	cueyaml "cuelang.org/go/encoding/yaml"

	"github.com/ferry-dev/ferry/schema"
)

// Limits that keep a hostile or broken repository from exhausting the
// loader. A plan repository is text written by people; these are generous.
const (
	MaxFileSize  = 1 << 20 // bytes per plan file
	MaxFiles     = 2000    // plan files per repository
	MaxYAMLDepth = 64      // nesting levels in one YAML document
	maxAliases   = 100     // YAML alias uses per file (refuses YAML bombs)
)

// Directories of a plan repository that hold something other than plans.
const (
	PolicyDir   = "policy"
	OverlaysDir = "overlays"
)

// Load reads every plan file of the repository in fsys (CUE and YAML, at any
// depth, except under policy/ and overlays/), validates them against the
// schema and the repository's own policy, decodes the typed model and runs
// the semantic checks. All problems are returned at once as Errors.
func Load(fsys fs.FS) (*Repository, error) {
	files, err := collect(fsys)
	if err != nil {
		return nil, err
	}
	return loadFiles(files)
}

type file struct {
	name string // slash path relative to the repository root
	data []byte
}

type repoFiles struct {
	plans    []file
	policy   []file
	overlays map[string]map[string][]byte
}

func collect(fsys fs.FS) (*repoFiles, error) {
	rf := &repoFiles{overlays: map[string]map[string][]byte{}}
	var errs Errors
	n := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, &ValidationError{File: p, Msg: err.Error()})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		base := d.Name()
		if p != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_")) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			errs = append(errs, &ValidationError{File: p, Msg: "symbolic links are not followed in a plan repository; replace it with the file itself"})
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		top, rest, _ := strings.Cut(p, "/")
		kind := ""
		switch {
		case top == OverlaysDir && rest != "":
			kind = "overlay"
		case top == PolicyDir && rest != "":
			if path.Ext(p) != ".cue" {
				return nil
			}
			kind = "policy"
		default:
			switch path.Ext(p) {
			case ".cue", ".yaml", ".yml":
				kind = "plan"
			default:
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			errs = append(errs, &ValidationError{File: p, Msg: err.Error()})
			return nil
		}
		if info.Size() > MaxFileSize {
			errs = append(errs, &ValidationError{File: p, Msg: fmt.Sprintf("file is %d bytes; plan files may be at most %d bytes", info.Size(), MaxFileSize)})
			return nil
		}
		if n++; n > MaxFiles {
			return fmt.Errorf("more than %d files; is this the plan directory?", MaxFiles)
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, &ValidationError{File: p, Msg: err.Error()})
			return nil
		}
		switch kind {
		case "overlay":
			cluster, rel, ok := strings.Cut(rest, "/")
			if !ok {
				errs = append(errs, &ValidationError{File: p, Msg: "overlay files live in overlays/<cluster>/"})
				return nil
			}
			if rf.overlays[cluster] == nil {
				rf.overlays[cluster] = map[string][]byte{}
			}
			rf.overlays[cluster][rel] = data
		case "policy":
			rf.policy = append(rf.policy, file{p, data})
		default:
			rf.plans = append(rf.plans, file{p, data})
		}
		return nil
	})
	if err != nil {
		errs = append(errs, &ValidationError{Msg: err.Error()})
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	if len(rf.plans) == 0 {
		return nil, Errors{{Msg: "no plan files (*.cue, *.yaml, *.yml) found"}}
	}
	return rf, nil
}

// LoadFiles validates plan files given by name and content; the names are
// what error positions carry. It serves tests and the fuzzer.
func LoadFiles(plans map[string][]byte) (*Repository, error) {
	rf := &repoFiles{overlays: map[string]map[string][]byte{}}
	for name, data := range plans {
		if strings.HasPrefix(name, PolicyDir+"/") {
			rf.policy = append(rf.policy, file{name, data})
			continue
		}
		rf.plans = append(rf.plans, file{name, data})
	}
	return loadFiles(rf)
}

func loadFiles(rf *repoFiles) (*Repository, error) {
	sort.Slice(rf.plans, func(i, j int) bool { return rf.plans[i].name < rf.plans[j].name })
	sort.Slice(rf.policy, func(i, j int) bool { return rf.policy[i].name < rf.policy[j].name })

	// A fresh context per load: a CUE context grows with every value.
	ctx := cuecontext.New()
	repoSchema, err := schema.Build(ctx)
	if err != nil {
		return nil, err
	}
	var errs Errors
	var values []cue.Value
	for _, f := range rf.plans {
		v, ferrs := buildFile(ctx, f)
		errs = append(errs, ferrs...)
		if ferrs == nil {
			values = append(values, v)
		}
	}
	var policies []cue.Value
	for _, f := range rf.policy {
		v, ferrs := buildFile(ctx, f)
		errs = append(errs, ferrs...)
		if ferrs == nil {
			policies = append(policies, v)
		}
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}

	data := unifyAll(ctx, values)
	full := repoSchema.Unify(data)
	for _, p := range policies {
		full = full.Unify(p)
	}
	var cueErrs Errors
	if err := full.Validate(cue.Concrete(true), cue.All()); err != nil {
		cueErrs = convertCUE(err, data, repoSchema)
	}
	if cueErrs != nil {
		var more Errors
		full, more = repair(ctx, repoSchema, data, policies, cueErrs)
		cueErrs = append(cueErrs, more...)
	}
	if cueErrs == nil || full.Exists() {
		var repo *Repository
		repo, errs = decode(full, data, cueErrs != nil)
		repo.Overlays = rf.overlays
		errs = append(errs, check(repo, data)...)
		if cueErrs == nil && len(errs) == 0 {
			return repo, nil
		}
	}
	if cueErrs != nil {
		errs = append(cueErrs, underNone(errs, cueErrs)...)
	}
	errs.sort()
	return nil, errs.dedupe()
}

// unifyAll unifies vs pairwise, as a balanced tree: a left-deep chain of
// Unify calls costs time quadratic in the number of files.
func unifyAll(ctx *cue.Context, vs []cue.Value) cue.Value {
	if len(vs) == 0 {
		return ctx.CompileString("{}")
	}
	for len(vs) > 1 {
		next := make([]cue.Value, 0, (len(vs)+1)/2)
		for i := 0; i < len(vs); i += 2 {
			if i+1 < len(vs) {
				next = append(next, vs[i].Unify(vs[i+1]))
			} else {
				next = append(next, vs[i])
			}
		}
		vs = next
	}
	return vs[0]
}

// repair returns the repository with the fields that have schema errors
// taken out (and, failing that, the migrations that hold them), so that the
// semantic checks can still look at everything else in the same run. CUE
// hides some errors (closedness) while others stand, so each round may
// find more; those are returned to be reported too.
func repair(ctx *cue.Context, repoSchema, data cue.Value, policies []cue.Value, errs Errors) (cue.Value, Errors) {
	x, ok := salvage(data)
	root, isMap := x.(map[string]any)
	if !ok || !isMap {
		return cue.Value{}, nil
	}
	var more Errors
	removed := map[string]bool{}
	for round := 0; round < 5; round++ {
		for _, e := range errs {
			sels := e.sels
			if e.Msg == msgRequired && removed[e.Path] {
				// A required enum taken out above: stand in its first
				// value; what was said of it is dropped by underNone.
				if first := firstAlternative(sels, repoSchema); first != "" && setPath(root, sels, first) {
					continue
				}
				if len(sels) > 2 && sels[0] == "migrations" {
					sels = sels[:2]
				}
			}
			for i, sel := range sels {
				// A policy's own hidden fields are not in the data: take
				// out what holds them.
				if strings.HasPrefix(sel, "_") {
					sels = sels[:max(i, min(2, len(sels)))]
					break
				}
			}
			removed[e.Path] = true
			cut := sels
			for i, sel := range sels {
				if isIndex(sel) {
					cut = sels[:i]
					break
				}
			}
			removed[formatPath(cut)] = true
			deletePath(root, sels)
		}
		v := repoSchema.Unify(ctx.Encode(root))
		for _, p := range policies {
			v = v.Unify(p)
		}
		err := v.Validate(cue.Concrete(true), cue.All())
		if err == nil {
			return v, more
		}
		errs = convertCUE(err, data, repoSchema)
		for _, e := range errs {
			if !(e.Msg == msgRequired && removed[e.Path]) {
				more = append(more, e)
			}
		}
	}
	return cue.Value{}, more
}

// deletePath removes the field at sels; a path into a list removes the
// whole list, so that no index shifts.
func deletePath(m map[string]any, sels []string) {
	for i, s := range sels {
		s = strings.Trim(s, `"`)
		if i == len(sels)-1 || isIndex(sels[i+1]) {
			delete(m, s)
			return
		}
		next, ok := m[s].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
}

// setPath sets the field at sels (a path of struct fields only).
func setPath(m map[string]any, sels []string, v any) bool {
	for i, s := range sels {
		s = strings.Trim(s, `"`)
		if isIndex(s) {
			return false
		}
		if i == len(sels)-1 {
			m[s] = v
			return true
		}
		next, ok := m[s].(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	return false
}

// underNone drops semantic errors about fields that already have a schema
// error (they were decoded as missing, so anything said of them is noise),
// and what was said of a migration's provider when the provider is broken.
func underNone(sem, schemaErrs Errors) Errors {
	var out Errors
	for _, e := range sem {
		noisy := false
		for _, c := range schemaErrs {
			if c.Path == "" {
				continue
			}
			if e.Path == c.Path || strings.HasPrefix(e.Path, c.Path+".") || strings.HasPrefix(e.Path, c.Path+"[") ||
				strings.HasPrefix(c.Path, e.Path+".") {
				noisy = true
				break
			}
			if mig, field, ok := migrationField(c.Path); ok && field == "provider" && strings.Contains(e.Msg, "provider") &&
				strings.HasPrefix(e.Path, mig+".") {
				noisy = true
				break
			}
		}
		if !noisy {
			out = append(out, e)
		}
	}
	return out
}

// migrationField splits "migrations.m.field..." into "migrations.m" and
// "field".
func migrationField(p string) (string, string, bool) {
	parts := strings.SplitN(p, ".", 4)
	if len(parts) < 3 || parts[0] != "migrations" {
		return "", "", false
	}
	field, _, _ := strings.Cut(parts[2], "[")
	return parts[0] + "." + parts[1], field, true
}

// buildFile parses one plan or policy file into a value of ctx.
func buildFile(ctx *cue.Context, f file) (cue.Value, Errors) {
	var astf *ast.File
	var err error
	switch path.Ext(f.name) {
	case ".cue":
		astf, err = parser.ParseFile(f.name, f.data)
		if err == nil {
			// Plan files may name any package; they are unified as one
			// value, so the clause carries no meaning here.
			astf.Decls = dropPackage(astf.Decls)
		}
	default:
		if verr := checkYAML(f.name, f.data); verr != nil {
			return cue.Value{}, Errors{verr}
		}
		astf, err = cueyaml.Extract(f.name, f.data)
	}
	if err != nil {
		return cue.Value{}, convertCUE(err, cue.Value{}, cue.Value{})
	}
	if astf == nil {
		return ctx.CompileString("{}"), nil
	}
	v := ctx.BuildFile(astf)
	if err := v.Err(); err != nil {
		return cue.Value{}, convertCUE(err, cue.Value{}, cue.Value{})
	}
	if k := v.IncompleteKind(); k&cue.StructKind == 0 && k != cue.NullKind {
		return cue.Value{}, Errors{{File: f.name, Line: 1, Column: 1, Msg: fmt.Sprintf("a plan file holds a map with clusters and migrations; found %s", k)}}
	}
	if v.Kind() == cue.NullKind {
		return ctx.CompileString("{}"), nil
	}
	return v, nil
}

func dropPackage(decls []ast.Decl) []ast.Decl {
	out := decls[:0]
	for _, d := range decls {
		if _, ok := d.(*ast.Package); ok {
			continue
		}
		out = append(out, d)
	}
	return out
}

// convertCUE turns CUE's errors into ValidationErrors, preferring positions
// in the user's files over the schema's and phrasing them for people.
func convertCUE(err error, data, repoSchema cue.Value) Errors {
	var out Errors
	// A failed disjunction comes as one summary plus one error per
	// alternative; say it once, in the most useful words.
	type group struct {
		first *ValidationError
		msgs  []string
	}
	groups := map[string]*group{}
	for _, e := range cueerrors.Errors(err) {
		path := e.Path()
		if len(path) > 0 && path[0] == "#Repository" {
			path = path[1:]
		}
		ve := &ValidationError{Path: formatPath(path), sels: path}
		pos := userPos(cueerrors.Positions(e))
		if !pos.IsValid() && data.Exists() && len(path) > 0 {
			pos = nearestPos(data, path)
		}
		if pos.IsValid() {
			ve.File, ve.Line, ve.Column = pos.Filename(), pos.Line(), pos.Column()
		}
		format, args := e.Msg()
		msg := fmt.Sprintf(format, args...)
		if msg == "" {
			msg = e.Error()
		}
		g := groups[ve.Path]
		if g == nil || ve.Path == "" {
			g = &group{first: ve}
			if ve.Path != "" {
				groups[ve.Path] = g
			}
			out = append(out, ve)
		} else if ve.File != "" && !strings.Contains(msg, "errors in empty disjunction") {
			g.first.File, g.first.Line, g.first.Column = ve.File, ve.Line, ve.Column
		}
		g.msgs = append(g.msgs, msg)
		g.first.Msg = bestMessage(g.msgs, path, data, repoSchema)
	}
	if len(out) == 0 {
		out = append(out, &ValidationError{Msg: err.Error()})
	}
	return dropListNoise(out)
}

// dropListNoise removes what CUE says when a list fails to unify with the
// schema's default list: "incompatible list lengths" and element conflicts
// with the default's elements. The real problem is reported on its own.
func dropListNoise(es Errors) Errors {
	lists := map[string]bool{}
	for _, e := range es {
		if strings.HasPrefix(e.Msg, "incompatible list lengths") {
			lists[e.Path] = true
		}
	}
	if len(lists) == 0 {
		return es
	}
	var out Errors
	for _, e := range es {
		if lists[e.Path] {
			continue
		}
		if i := strings.LastIndex(e.Path, "["); i > 0 && lists[e.Path[:i]] && strings.HasPrefix(e.Msg, "conflicting values") {
			continue
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return es
	}
	return out
}

// userPos picks the first position that is not inside the embedded schema.
func userPos(ps []token.Pos) token.Pos {
	for _, p := range ps {
		if p.IsValid() && p.Filename() != schema.Filename {
			return p
		}
	}
	return token.NoPos
}

// nearestPos finds the position of the deepest part of path that exists in
// the user's data (for a missing field, its parent).
func nearestPos(data cue.Value, sels []string) token.Pos {
	for n := len(sels); n >= 0; n-- {
		v := data.LookupPath(makePath(sels[:n]))
		if v.Exists() {
			if p := valuePos(v); p.IsValid() {
				return p
			}
		}
	}
	return token.NoPos
}

// makePath turns error path selectors into a cue.Path.
func makePath(sels []string) cue.Path {
	ps := make([]cue.Selector, 0, len(sels))
	for _, s := range sels {
		if isIndex(s) {
			n := 0
			fmt.Sscan(s, &n)
			ps = append(ps, cue.Index(n))
			continue
		}
		ps = append(ps, cue.Str(strings.Trim(s, `"`)))
	}
	return cue.MakePath(ps...)
}

// valuePos is where v's value is written (not its label), so that an error
// points at the offending value.
func valuePos(v cue.Value) token.Pos {
	if f, ok := v.Source().(*ast.Field); ok && f.Value != nil && f.Value.Pos().IsValid() {
		return f.Value.Pos()
	}
	return v.Pos()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// formatPath writes a CUE path the way people read it:
// migrations.legacy-to-eks.steps[2].
func formatPath(sels []string) string {
	var b strings.Builder
	for _, s := range sels {
		if isIndex(s) {
			fmt.Fprintf(&b, "[%s]", s)
			continue
		}
		s = strings.Trim(s, "\"")
		if strings.ContainsAny(s, "/ .[]") {
			fmt.Fprintf(&b, "[%q]", s)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// checkYAML refuses YAML that would expand far beyond its size (alias
// bombs) or nest deeper than any plan needs, before a parser sees it.
func checkYAML(name string, data []byte) *ValidationError {
	if bytes.IndexByte(data, 0) >= 0 {
		return &ValidationError{File: name, Msg: "file contains a NUL byte; plan files are text"}
	}
	aliases, depth, line := 0, 0, 1
	inQuote := byte(0)
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
			if inQuote == '\'' || inQuote == '"' {
				continue
			}
		case inQuote != 0:
			if c == inQuote {
				inQuote = 0
			}
			continue
		case c == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n'):
			for i < len(data) && data[i] != '\n' {
				i++
			}
			i--
		case c == '"' || c == '\'':
			if i == 0 || data[i-1] == ' ' || data[i-1] == '[' || data[i-1] == '{' || data[i-1] == ',' || data[i-1] == ':' || data[i-1] == '\n' || data[i-1] == '-' {
				inQuote = c
			}
		case c == '*' && (i == 0 || data[i-1] == ' ' || data[i-1] == '[' || data[i-1] == ',' || data[i-1] == '\n'):
			if i+1 < len(data) && data[i+1] != ' ' {
				aliases++
				if aliases > maxAliases {
					return &ValidationError{File: name, Line: line, Column: 1, Msg: fmt.Sprintf("more than %d YAML aliases; refusing a document that may expand without bound", maxAliases)}
				}
			}
		case c == '[' || c == '{':
			depth++
			if depth > MaxYAMLDepth {
				return &ValidationError{File: name, Line: line, Column: 1, Msg: fmt.Sprintf("nesting deeper than %d levels", MaxYAMLDepth)}
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	// Block-style nesting shows as indentation.
	for i, l := range strings.Split(string(data), "\n") {
		ind := len(l) - len(strings.TrimLeft(l, " -"))
		if ind > MaxYAMLDepth*8 {
			return &ValidationError{File: name, Line: i + 1, Column: 1, Msg: fmt.Sprintf("indented %d columns; nesting deeper than any plan needs", ind)}
		}
	}
	return nil
}
