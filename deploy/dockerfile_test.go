package deploy_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// nonrootUID is distroless's "nonroot" user, the image's USER and the
// Deployment's runAsUser.
const nonrootUID = 65532

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// stage is one FROM ... section.
type stage struct {
	image, name string
	instrs      []instruction
	args        map[string]string // ARG defaults
}

func parseDockerfile(t *testing.T, b []byte) []*stage {
	t.Helper()
	var (
		stages []*stage
		cur    strings.Builder
		start  int
	)
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			words := strings.Fields(in.args)
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				words = words[1:]
			}
			st := &stage{args: map[string]string{}}
			switch {
			case len(words) == 1:
				st.image = words[0]
			case len(words) == 3 && strings.EqualFold(words[1], "AS"):
				st.image, st.name = words[0], words[2]
			default:
				t.Fatalf("Dockerfile:%d: FROM %s", start, in.args)
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before FROM", start, in.cmd)
			}
			return
		}
		st := stages[len(stages)-1]
		if in.cmd == "ARG" {
			name, def, _ := strings.Cut(in.args, "=")
			st.args[name] = def
		}
		st.instrs = append(st.instrs, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// shellWords splits a RUN command line as sh would for the simple
// commands used here: quotes removed, $VAR and ${VAR} expanded from vars.
// Anything fancier (pipes, &&, $(...)) fails the test.
func shellWords(t *testing.T, s string, vars map[string]string) []string {
	t.Helper()
	if strings.ContainsAny(s, "|;&`") || strings.Contains(s, "$(") {
		t.Fatalf("RUN %s: not a simple command", s)
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return vars[k] })
	}
	var (
		words []string
		w     strings.Builder
		in    bool
		quote rune
	)
	for _, r := range s {
		switch {
		case quote == '\'' && r != '\'':
			w.WriteRune(r)
		case quote == '"' && r != '"':
			w.WriteRune(r)
		case r == '\'' || r == '"':
			if quote == r {
				quote = 0
			} else {
				quote = r
			}
			in = true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, expand(w.String()))
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("RUN %s: unbalanced quote", s)
	}
	if in {
		words = append(words, expand(w.String()))
	}
	return words
}

// TestDockerfile checks that the Dockerfile's stages fit together: the
// builder's Go matches go.mod, its `go build` compiles from what
// .dockerignore lets into the context into a static binary that reports
// its version, and the final stage runs that binary as nonroot from a
// distroless or scratch image.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, b)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a final one", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	// The builder's Go is go.mod's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gover := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?$`).FindSubmatch(gomod)
	if gover == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(gover[1]); builder.image != want {
		t.Errorf("builder image %s, want %s (go.mod says go %s%s)", builder.image, want, gover[1], gover[2])
	}
	if builder.name == "" {
		t.Fatalf("builder stage has no name (FROM ... AS name)")
	}

	// The build command, as the builder would run it for this platform.
	// VERSION as `docker build --build-arg VERSION=...` sets it, distinct
	// from the binary's default, so that a wrong -X shows.
	vars := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "VERSION": "v0.0.0-dockerfile-test"}
	if _, ok := builder.args["VERSION"]; !ok {
		t.Errorf("the builder stage declares no ARG VERSION")
	}
	for k, v := range builder.args {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	var (
		workdir string
		copied  bool
		build   []string
		env     []string
	)
	for _, in := range builder.instrs {
		switch in.cmd {
		case "WORKDIR":
			workdir = in.args
		case "COPY":
			if in.args == ". ." || in.args == ". "+workdir || in.args == ". "+workdir+"/" {
				copied = true
			}
		case "RUN":
			words := shellWords(t, in.args, vars)
			for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
				words = words[1:]
			}
			var e []string
			for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
				e = append(e, words[0])
				words = words[1:]
			}
			if len(words) >= 2 && words[0] == "go" && words[1] == "build" {
				if build != nil {
					t.Fatalf("Dockerfile:%d: a second go build", in.line)
				}
				if !copied {
					t.Errorf("Dockerfile:%d: go build before COPY . .", in.line)
				}
				build, env = words, e
			}
		}
	}
	if build == nil {
		t.Fatal("the builder stage runs no go build")
	}
	if workdir == "" {
		t.Errorf("the builder stage has no WORKDIR")
	}
	hasEnv := func(kv string) bool {
		for _, e := range env {
			if e == kv {
				return true
			}
		}
		return false
	}
	if !hasEnv("CGO_ENABLED=0") {
		t.Errorf("go build runs with %v, want CGO_ENABLED=0 (a static binary for distroless/static)", env)
	}
	out, outIdx, ldflags := "", -1, ""
	for i, w := range build {
		switch {
		case w == "-o" && i+1 < len(build):
			out, outIdx = build[i+1], i+1
		case strings.HasPrefix(w, "-ldflags="):
			ldflags = strings.TrimPrefix(w, "-ldflags=")
		}
	}
	if !strings.Contains(strings.Join(build, " "), " -trimpath ") {
		t.Errorf("go build %v: no -trimpath", build)
	}
	if !strings.Contains(" "+ldflags+" ", " -s -w ") {
		t.Errorf("go build -ldflags=%q: want -s -w", ldflags)
	}
	if out == "" || !filepath.IsAbs(out) {
		t.Fatalf("go build %v: want -o with an absolute path", build)
	}

	// The final stage: distroless static or scratch, nonroot, the binary
	// the builder made.
	if !regexp.MustCompile(`^(gcr\.io/distroless/static(-debian\d+)?:nonroot|scratch)$`).MatchString(final.image) {
		t.Errorf("final image %s, want gcr.io/distroless/static-debian12:nonroot or scratch", final.image)
	}
	var user, entrypoint, binary string
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(in.args), &ep); err != nil || len(ep) != 1 {
				t.Errorf("Dockerfile:%d: ENTRYPOINT %s, want the exec form with the binary only", in.line, in.args)
			} else {
				entrypoint = ep[0]
			}
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && f[0] == "--from="+builder.name && f[1] == out {
				binary = f[2]
			}
		case "RUN":
			t.Errorf("Dockerfile:%d: RUN in the final stage (distroless has no shell)", in.line)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n != nonrootUID {
		t.Errorf("final USER %q, want numeric %d (runAsNonRoot can only verify a numeric user)", user, nonrootUID)
	}
	if binary == "" {
		t.Errorf("the final stage copies no %s from stage %s", out, builder.name)
	} else if entrypoint != binary {
		t.Errorf("ENTRYPOINT %q, want the copied binary %s", entrypoint, binary)
	}

	// Build exactly that, from a copy of what .dockerignore lets into the
	// context.
	ctxDir := dockerContext(t, "..")
	bin := filepath.Join(t.TempDir(), "ferry")
	args := append([]string(nil), build[1:]...)
	args[outIdx-1] = bin
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in the Docker context): %v\n%s", strings.Join(args, " "), err, b)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the binary is dynamically linked; distroless/static has no libc")
		}
	}
	if f.Section(".debug_info") != nil {
		t.Errorf("the binary has DWARF despite -w")
	}
	v, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("ferry version: %v\n%s", err, v)
	}
	if want := "ferry " + vars["VERSION"] + " "; !strings.HasPrefix(string(v), want) {
		t.Errorf("ferry version = %q, want it to start with %q (the -X of -ldflags)", v, want)
	}
}

// dockerContext copies root into a temporary directory, leaving out what
// .dockerignore excludes, as docker does when it sends the build context.
// Only the pattern forms used in .dockerignore are supported ("!" is not).
func dockerContext(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []*regexp.Regexp
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not supported by this test", l)
		}
		patterns = append(patterns, ignoreRegexp(strings.Trim(filepath.Clean(l), "/")))
	}
	ignored := func(rel string) bool {
		for _, p := range patterns {
			if p.MatchString(rel) {
				return true
			}
		}
		return false
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/ferry/main.go"} {
		if ignored(need) {
			t.Errorf(".dockerignore excludes %s", need)
		}
	}
	dst := t.TempDir()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// ignoreRegexp turns a .dockerignore pattern (Go's filepath.Match syntax
// plus "**") into a regexp matching a path or any path below it.
func ignoreRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("(/.*)?$")
	return regexp.MustCompile(b.String())
}
