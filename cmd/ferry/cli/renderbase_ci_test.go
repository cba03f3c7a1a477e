package cli

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestCIExamples checks that the CI examples are YAML, run ferry validate
// and ferry render --base with --format markdown, and that every ferry
// command line in them names a real command with flags it accepts.
func TestCIExamples(t *testing.T) {
	for _, file := range []string{"github/ferry.yaml", "gitlab/ferry.gitlab-ci.yml"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "ci", file))
			if err != nil {
				t.Fatal(err)
			}
			var doc any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("not YAML: %v", err)
			}
			var used []string
			for _, s := range strings.FieldsFunc(strings.Join(yamlStrings(doc), "\n"), func(r rune) bool { return r == '\n' }) {
				args := ferryArgs(s)
				if args == nil {
					continue
				}
				root := NewRoot(io.Discard, io.Discard)
				cmd, rest, err := root.Find(args)
				if err != nil || cmd == root {
					t.Errorf("%q: no such ferry command: %v", s, err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("%q: %v", s, err)
					continue
				}
				name := cmd.Name()
				if name == "render" && cmd.Flags().Changed("base") {
					name = "render --base"
					if f, _ := cmd.Flags().GetString("format"); f != "markdown" {
						t.Errorf("%q: want --format markdown for a comment", s)
					}
				}
				used = append(used, name)
			}
			for _, want := range []string{"validate", "render --base"} {
				if !slices.Contains(used, want) {
					t.Errorf("runs no ferry %s; ferry commands: %q", want, used)
				}
			}
		})
	}
}

// yamlStrings returns every string value in a decoded YAML document.
func yamlStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, yamlStrings(x)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, x := range v {
			out = append(out, yamlStrings(x)...)
		}
		return out
	}
	return nil
}

// ferryArgs returns the arguments of the ferry command on a shell line,
// quotes removed, up to a redirection or an operator; nil when the line
// runs no ferry command.
func ferryArgs(line string) []string {
	fields := strings.Fields(line)
	for i, f := range fields {
		if f != "ferry" || i > 0 && !commandPosition(fields[i-1]) {
			continue
		}
		var args []string
		for _, a := range fields[i+1:] {
			if strings.HasPrefix(a, ">") || a == "||" || a == "&&" || a == "|" || a == "#" {
				break
			}
			args = append(args, strings.Trim(a, `"'`))
		}
		return args
	}
	return nil
}

// commandPosition reports whether the shell word before a word makes it a
// command name rather than an argument.
func commandPosition(prev string) bool {
	return strings.HasSuffix(prev, ";") || slices.Contains([]string{"&&", "||", "then", "do", "!"}, prev)
}

func TestFerryArgs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`ferry validate "$PLANS"`, []string{"validate", "$PLANS"}},
		{`code=0; ferry render "$PLANS" --base "origin/$BASE" --format markdown > comment.md || code=$?`,
			[]string{"render", "$PLANS", "--base", "origin/$BASE", "--format", "markdown"}},
		{`go install github.com/ferry-dev/ferry/cmd/ferry@latest # pin`, nil},
		{`marker='<!-- ferry render --base -->'`, nil},
		{`echo ferry validate`, nil},
	} {
		got := ferryArgs(tc.line)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ferryArgs(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}
