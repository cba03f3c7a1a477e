package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/cluster"
)

const diffPlan = `
clusters: {a: {context: a}, b: {context: b}, c: {}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    linkerd: {split: smi}
    waves: [{name: w, services: [web/shop, web/cart]}]
`

func TestDiffExitCodes(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(diffPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range env.Names() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		if _, err := env.Clusters[name].Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	diff := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"diff", dir, "--kubeconfig", env.Kubeconfig}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := diff()
	if code != ExitInvalid || !strings.Contains(out, "+++ dry-run/a//Service/web/shop-local") || !strings.Contains(out, "--- /dev/null") {
		t.Fatalf("before apply: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	repo, err := plans.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	res, err := renderer.Render(repo, plans.Steps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range env.Names() {
		a, err := apply.New(env.Clusters[name].Config, name, apply.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Apply(t.Context(), "m", res.Cluster(name).Objects); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	if code, out, errOut := diff(); code != ExitOK || out != "" {
		t.Errorf("after apply: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = diff("--step", "m/web/shop=25", "--context", "b")
	if code != ExitInvalid || !strings.Contains(out, "-    weight: 0") || strings.Contains(out, "dry-run/a/") {
		t.Errorf("at step 25 in b: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"--step", "m/web/nope=1"},
		{"--step", "garbage"},
		{"--context", "elsewhere"},
	} {
		if code, _, errOut := diff(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d; stderr: %s", args, code, ExitUsage, errOut)
		}
	}
	// Taking cart out of the plan shows its objects going away.
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(strings.ReplaceAll(diffPlan, ", web/cart", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = diff("--context", "a")
	if code != ExitInvalid || !strings.Contains(out, "--- live/a/split.smi-spec.io/TrafficSplit/web/cart\n+++ /dev/null") || strings.Contains(out, "web/shop") {
		t.Errorf("cart removed: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var stderr bytes.Buffer
	if code := run([]string{"diff", dir, "--kubeconfig", filepath.Join(dir, "missing")}, &bytes.Buffer{}, &stderr); code != ExitUsage {
		t.Errorf("missing kubeconfig: exit %d, want %d; stderr: %s", code, ExitUsage, stderr.String())
	}
}

func TestParseStepFlags(t *testing.T) {
	repo, err := plans.LoadFiles(map[string][]byte{"plan.yaml": []byte(diffPlan)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseStepFlags(repo, []string{"m/web/shop=25", "m/web/cart=0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := plans.Steps{{Migration: "m", Service: "web/shop"}: 2, {Migration: "m", Service: "web/cart"}: 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	for _, bad := range []string{"m/web/shop", "m/web=1", "m/web/shop=x", "m//shop=5", "m/web/shop=-1", "m/web/shop=33", "a/b/c/d=5", "n/web/shop=5"} {
		if _, err := parseStepFlags(repo, []string{bad}, nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
