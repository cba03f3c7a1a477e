package reconciler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/test/cluster"
)

const clusterPlan = `
clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 10s
    window: {schedule: ["@every 10s"]}
    waves:
      - name: first
        services: [shop/cart]
`

// TestClustersReadinessBlocksThenPromotes runs the loop against two real
// API servers: with no ready endpoints for the target, the service does not
// get weight; once endpoints are ready, it moves one step per tick to 100 %
// and the TrafficSplit in both clusters says so.
func TestClustersReadinessBlocksThenPromotes(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	ctx := t.Context()
	fixtures(t, env, []string{"a", "b"})
	for _, name := range []string{"a", "b"} {
		c := env.Clusters[name].Client
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "cart"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := c.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(name string) {
		yes := true
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "cart-1", Namespace: "shop", Labels: map[string]string{"kubernetes.io/service-name": "cart"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
		}
		if _, err := env.Clusters[name].Client.DiscoveryV1().EndpointSlices("shop").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ready("a") // the incumbent is serving

	_, src, store := newLoop(t, clusterPlan)
	appliers := map[string]*apply.Applier{}
	for _, name := range []string{"a", "b"} {
		a, err := apply.New(env.Clusters[name].Config, name, apply.Options{})
		if err != nil {
			t.Fatal(err)
		}
		appliers[name] = a
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var last plans.Decision
	r := reconciler.New(reconciler.Config{
		Source: src, Store: store, Target: apply.NewTarget(appliers),
		Now: func() time.Time { return now },
		OnReconcile: func(_ *plans.Repository, d map[string]plans.Plan) {
			last = *d["m"].Decision("shop/cart")
		},
	})
	tick := func(n int) {
		for range n {
			if err := r.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(10 * time.Second)
		}
	}
	tick(4)
	if last.Progress.Step != 0 || !strings.Contains(last.Blocked+strings.Join(last.Reasons, " "), "ready") {
		t.Fatalf("promoted without ready endpoints on b: step %d, blocked %q", last.Progress.Step, last.Blocked)
	}
	ready("b")
	tick(8)
	if last.Progress.Step != 2 {
		t.Fatalf("step %d after endpoints became ready, want 2 (100%%); blocked %q", last.Progress.Step, last.Blocked)
	}
	splits := schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}
	for name, wantLocal := range map[string]int64{"a": 0, "b": 100} {
		ts, err := env.Clusters[name].Dynamic.Resource(splits).Namespace("shop").Get(context.Background(), "cart", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("cluster %s: %v", name, err)
		}
		backends, _, _ := unstructured.NestedSlice(ts.Object, "spec", "backends")
		if len(backends) != 2 {
			t.Fatalf("cluster %s: backends %v", name, backends)
		}
		local := backends[0].(map[string]any)
		if w, _ := local["weight"].(int64); w != wantLocal {
			t.Errorf("cluster %s: local backend %v, want weight %d", name, local, wantLocal)
		}
	}
}
