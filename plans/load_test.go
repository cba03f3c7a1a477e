package plans_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"

	"github.com/ferry-dev/ferry/plans"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestInvalid loads every archive under testdata/invalid and compares the
// complete error output, positions included, with its "want" section.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("found %d invalid cases, want at least 25", len(files))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".txtar")
		t.Run(name, func(t *testing.T) {
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			in := map[string][]byte{}
			wantIdx := -1
			for i, f := range ar.Files {
				if f.Name == "want" {
					wantIdx = i
					continue
				}
				in[f.Name] = f.Data
			}
			_, err = plans.LoadFiles(in)
			if err == nil {
				t.Fatalf("LoadFiles succeeded; want errors")
			}
			got := err.Error() + "\n"
			if *update {
				if wantIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "want"})
					wantIdx = len(ar.Files) - 1
				}
				ar.Files[wantIdx].Data = []byte(got)
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if wantIdx < 0 || len(bytes.TrimSpace(ar.Files[wantIdx].Data)) == 0 {
				t.Fatalf("no want section; run go test ./plans -update\ngot:\n%s", got)
			}
			if diff := cmp.Diff(string(ar.Files[wantIdx].Data), got); diff != "" {
				t.Errorf("errors differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThreeMistakesThreeErrors(t *testing.T) {
	ar, err := txtar.ParseFile("testdata/invalid/three-mistakes.txtar")
	if err != nil {
		t.Fatal(err)
	}
	_, err = plans.LoadFiles(map[string][]byte{"plan.yaml": ar.Files[0].Data})
	var errs plans.Errors
	if !asErrors(err, &errs) || len(errs) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for _, e := range errs {
		if e.File != "plan.yaml" || e.Line == 0 || e.Column == 0 || e.Path == "" {
			t.Errorf("error without full position: %+v", e)
		}
	}
}

func asErrors(err error, target *plans.Errors) bool {
	es, ok := err.(plans.Errors)
	*target = es
	return ok
}

// TestExamples validates every bundled example repository.
func TestExamples(t *testing.T) {
	dirs, _ := filepath.Glob("../examples/*")
	n := 0
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() || filepath.Base(dir) == "ci" {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			repo, err := plans.Load(os.DirFS(dir))
			if err != nil {
				t.Fatalf("example does not validate:\n%v", err)
			}
			if len(repo.Migrations) == 0 {
				t.Fatal("example has no migrations")
			}
			for _, m := range repo.Migrations {
				if m.Steps[0].Weight != 0 || m.Steps[len(m.Steps)-1].Weight != 100 {
					t.Errorf("%s: steps %v do not run from 0 to 100", m.Name, m.Steps)
				}
			}
		})
	}
	if n < 3 {
		t.Fatalf("found %d examples, want at least 3", n)
	}
}

func TestDefaultsComeFromSchema(t *testing.T) {
	repo, err := plans.LoadFiles(map[string][]byte{"p.yaml": []byte(`
clusters: {a: {}, b: {}}
migrations:
  m:
    from: a
    to: b
    provider: istio
    waves: [{name: w, services: [ns/svc]}]
`)})
	if err != nil {
		t.Fatal(err)
	}
	m := repo.Migrations[0]
	got := []any{len(m.Steps), m.Soak.String(), string(m.OnFailure), m.FailureThreshold, m.Window.Timezone, m.Window.Schedules[0], m.Istio.Mode, m.Services()[0].Port}
	want := []any{5, "5m0s", "rollback", 3, "UTC", "*/15 9-16 * * 1-5", "ambient", 80}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}
