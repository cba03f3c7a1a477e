package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferry-dev/ferry/plans"
	pf "github.com/ferry-dev/ferry/reconciler/preflight"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/cluster"
)

// TestPreflight runs against two real API servers: a missing namespace and
// missing Linkerd Links fail with how to fix them; once they exist every
// check passes. A user without rights fails the RBAC checks.
func TestPreflight(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	dir := t.TempDir()
	plan := `
clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    waves: [{name: w, services: [shop/cart]}]
`
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	preflight := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := run([]string{"preflight", dir, "--kubeconfig", env.Kubeconfig}, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	code, out := preflight()
	if code != ExitInvalid {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"namespace shop does not exist", "no Link linkerd-multicluster/b", "no Link linkerd-multicluster/a", "serves split.smi-spec.io/v1alpha2 TrafficSplit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	link := schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha1", Resource: "links"}
	for name, peer := range map[string]string{"a": "b", "b": "a"} {
		c := env.Clusters[name]
		for _, ns := range []string{"shop", "linkerd-multicluster"} {
			if _, err := c.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "multicluster.linkerd.io/v1alpha1", "kind": "Link",
			"metadata": map[string]any{"name": peer, "namespace": "linkerd-multicluster"},
			"spec":     map[string]any{"targetClusterName": peer},
		}}
		if _, err := c.Dynamic.Resource(link).Namespace("linkerd-multicluster").Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("cluster %s: create Link: %v", name, err)
		}
	}
	if code, out := preflight(); code != ExitOK {
		t.Fatalf("exit %d after fixing, want 0\n%s", code, out)
	}

	// A user no binding grants anything to.
	cfg, err := env.Clusters["a"].NewUser("nobody")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := loadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := renderer.Render(repo, plans.Steps{})
	if err != nil {
		t.Fatal(err)
	}
	rs := pf.Check(t.Context(), cfg, repo, res.Cluster("a"), 10*time.Second)
	if !pf.Failed(rs) {
		t.Fatalf("a user without rights passed: %+v", rs)
	}
	var denied []string
	for _, r := range rs {
		if strings.HasPrefix(r.Check, "rbac") && !r.OK {
			denied = append(denied, r.Reason)
		}
	}
	if len(denied) == 0 || !strings.Contains(strings.Join(denied, "\n"), "not allowed to get, list, create, patch, delete trafficsplits") {
		t.Errorf("RBAC failures %q; want the verbs denied on trafficsplits", denied)
	}
}
