package renderer

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// exampleCases are the positions every example is rendered at: every
// service at step 0, in the middle of its steps, and at its last step.
var exampleCases = []struct {
	name string
	at   func(m *plans.Migration) int
}{
	{"step-first", func(m *plans.Migration) int { return 0 }},
	{"step-middle", func(m *plans.Migration) int { return len(m.Steps) / 2 }},
	{"step-last", func(m *plans.Migration) int { return len(m.Steps) - 1 }},
}

// TestExamples renders every plan repository under examples/ into
// testdata/examples/<example>/<case>/, exactly as WriteDir lays it out,
// and checks that `kubectl kustomize` builds each overlay into its
// manifests.yaml.
func TestExamples(t *testing.T) {
	kubectl := kubectlPath(t)
	dirs, err := filepath.Glob(filepath.Join("..", "examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		// examples/ci holds CI pipelines, not plans.
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || filepath.Base(dir) == "ci" {
			continue
		}
		example := filepath.Base(dir)
		t.Run(example, func(t *testing.T) {
			repo, err := plans.Load(os.DirFS(dir))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			for _, c := range exampleCases {
				t.Run(c.name, func(t *testing.T) {
					st := plans.Steps{}
					for _, m := range repo.Migrations {
						for _, s := range m.Services() {
							st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = c.at(m)
						}
					}
					res, err := Render(repo, st)
					if err != nil {
						t.Fatal(err)
					}
					got := t.TempDir()
					if err := WriteDir(res, got); err != nil {
						t.Fatal(err)
					}
					for _, cl := range res.Clusters {
						out := kubectlKustomize(t, kubectl, filepath.Join(got, cl.Name))
						if !bytes.Equal(out, cl.Manifests) {
							t.Errorf("cluster %s: kubectl kustomize differs from manifests.yaml (-manifests +kubectl):\n%s", cl.Name, lineDiff(string(cl.Manifests), string(out)))
						}
					}
					golden := filepath.Join("testdata", "examples", example, c.name)
					if *update {
						if err := os.RemoveAll(golden); err != nil {
							t.Fatal(err)
						}
						if err := WriteDir(res, golden); err != nil {
							t.Fatal(err)
						}
						return
					}
					compareTrees(t, golden, got)
				})
			}
		})
	}
}

// compareTrees fails unless two directories hold the same files with the
// same bytes.
func compareTrees(t *testing.T, want, got string) {
	t.Helper()
	read := func(root string) map[string][]byte {
		files := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			files[filepath.ToSlash(rel)] = b
			return err
		})
		if err != nil {
			t.Fatalf("%v (run go test ./renderer -update)", err)
		}
		return files
	}
	w, g := read(want), read(got)
	for p, b := range g {
		wb, ok := w[p]
		switch {
		case !ok:
			t.Errorf("%s/%s is missing (run go test ./renderer -update)", want, p)
		case !bytes.Equal(wb, b):
			t.Errorf("%s/%s is stale (run go test ./renderer -update); diff (-want +got):\n%s", want, p, lineDiff(string(wb), string(b)))
		}
	}
	for p := range w {
		if _, ok := g[p]; !ok {
			t.Errorf("%s/%s is no longer rendered (run go test ./renderer -update)", want, p)
		}
	}
}
