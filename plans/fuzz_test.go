package plans_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/plans"
)

// FuzzLoad feeds arbitrary bytes to the loader as a YAML and as a CUE plan
// file: it must return a repository or errors, never panic or hang.
// Seeded from examples/: go test -fuzz=FuzzLoad ./plans
func FuzzLoad(f *testing.F) {
	filepath.WalkDir("../examples", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".cue")) {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b, strings.HasSuffix(p, ".cue"))
			}
		}
		return nil
	})
	f.Add([]byte("a: &a [x]\nb: [*a, *a]\n"), false)
	f.Add([]byte(strings.Repeat("[", 10000)), false)
	f.Fuzz(func(t *testing.T, data []byte, isCUE bool) {
		name := "plan.yaml"
		if isCUE {
			name = "plan.cue"
		}
		// A load must end within a bound; a hang crashes the worker with
		// the input, so the fuzzer keeps it.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				panic(fmt.Sprintf("LoadFiles did not return within 10s on %s: %q", name, data))
			}
		}()
		repo, err := plans.LoadFiles(map[string][]byte{name: data})
		if err == nil && repo == nil {
			t.Fatal("nil repository without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

func TestYAMLBombsAndNestingRefused(t *testing.T) {
	cases := map[string]string{
		"deep-flow":  "a: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n",
		"deep-block": "a:\n" + strings.Repeat(" ", 700) + "b: 1\n",
		"aliases":    "a: &a [x]\n" + strings.Repeat("b: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n", 20),
		"nul":        "a: 1\x00\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := plans.LoadFiles(map[string][]byte{"plan.yaml": []byte(in)})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
