package cluster

import (
	"context"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TrafficSplits is the SMI TrafficSplit resource ferry renders for Linkerd.
var TrafficSplits = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}

// SplitToWeight reads the percent a TrafficSplit of cluster gives the
// migration's `to` cluster. ferry's local backend is <service>-local: in
// the `to` cluster that is the `to` side, elsewhere everything else is. It
// fails when the weights do not sum to 100 (DESIGN.md invariant 1).
func SplitToWeight(ts *unstructured.Unstructured, cluster, to string) (int64, error) {
	backends, _, err := unstructured.NestedSlice(ts.Object, "spec", "backends")
	if err != nil {
		return 0, fmt.Errorf("cluster %s: split %s: %w", cluster, ts.GetName(), err)
	}
	svc, _, _ := unstructured.NestedString(ts.Object, "spec", "service")
	var sum, local int64
	for _, b := range backends {
		m, _ := b.(map[string]any)
		w, _ := m["weight"].(int64)
		sum += w
		if m["service"] == svc+"-local" {
			local += w
		}
	}
	if sum != 100 {
		return 0, fmt.Errorf("cluster %s: split %s (resourceVersion %s): weights sum to %d: %v", cluster, ts.GetName(), ts.GetResourceVersion(), sum, backends)
	}
	if cluster == to {
		return local, nil
	}
	return sum - local, nil
}

// ToWeight gets the TrafficSplit ns/name of cluster and returns the percent
// it gives `to`; found is false when there is no such split.
func (e *Env) ToWeight(ctx context.Context, cluster, to, ns, name string) (w int64, found bool, err error) {
	ts, err := e.Clusters[cluster].Dynamic.Resource(TrafficSplits).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cluster %s: split %s/%s: %w", cluster, ns, name, err)
	}
	w, err = SplitToWeight(ts, cluster, to)
	return w, err == nil, err
}

// MustToWeight is ToWeight for tests: -1 when there is no split, and a
// failed read (or weights not summing to 100) fails t.
func (e *Env) MustToWeight(t testing.TB, cluster, to, ns, name string) int64 {
	t.Helper()
	w, found, err := e.ToWeight(context.Background(), cluster, to, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return -1
	}
	return w
}
