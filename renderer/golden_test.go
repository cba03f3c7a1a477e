package renderer

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenCase is a step a variant is rendered at.
type goldenCase struct {
	name  string
	setup func(repo *plans.Repository) plans.Steps
}

func stepIndex(m *plans.Migration, weight, mirror int) int {
	for i, s := range m.Steps {
		if s.Weight == weight && s.Mirror == mirror {
			return i
		}
	}
	return -1
}

// goldenCases returns the cases of a variant: step 0, a mirror step where
// the provider mirrors, a mid step where it weights, 100, and a rollback
// back to 0.
func goldenCases(v variant) []goldenCase {
	at := func(weight, mirror int) func(repo *plans.Repository) plans.Steps {
		return func(repo *plans.Repository) plans.Steps {
			return allAt(repo, stepIndex(repo.Migrations[0], weight, mirror))
		}
	}
	cs := []goldenCase{{"step-0", at(0, 0)}}
	if v.provider.CanMirror() {
		cs = append(cs, goldenCase{"mirror-20", at(0, 20)})
	}
	if v.provider.CanWeight() {
		cs = append(cs, goldenCase{"step-50", at(50, 0)})
	}
	cs = append(cs, goldenCase{"step-100", at(100, 0)})
	cs = append(cs, goldenCase{"rollback-0", func(repo *plans.Repository) plans.Steps {
		// The engine walks a rolled-back service to step 0; the renderer
		// renders the step it is given.
		m := repo.Migrations[0]
		m.Rollback = true
		for _, w := range m.Waves {
			w.Rollback = true
			for _, s := range w.Services {
				s.Rollback = true
			}
		}
		return allAt(repo, 0)
	}})
	return cs
}

// goldenBytes lays out a result as one reviewable file: each cluster's
// manifests under a "# cluster:" header.
func goldenBytes(res *Result) []byte {
	var b bytes.Buffer
	for _, c := range res.Clusters {
		b.WriteString("# cluster: " + c.Name + "\n")
		b.Write(c.Manifests)
	}
	return b.Bytes()
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./renderer -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s is stale (run go test ./renderer -update); diff (-want +got):\n%s", path, lineDiff(string(want), string(got)))
	}
}

func TestGolden(t *testing.T) {
	for _, v := range variants {
		for _, c := range goldenCases(v) {
			t.Run(v.name+"/"+c.name, func(t *testing.T) {
				repo := testRepo(v)
				res, err := Render(repo, c.setup(repo))
				if err != nil {
					t.Fatal(err)
				}
				checkGolden(t, filepath.Join("testdata", "golden", v.name, c.name+".yaml"), goldenBytes(res))
			})
		}
	}
}
