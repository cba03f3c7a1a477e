package apply_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/cluster"
)

// splits returns n TrafficSplits in namespace ns as the renderer writes them.
func splits(ns string, n int) []renderer.Object {
	objs := make([]renderer.Object, n)
	for i := range objs {
		name := fmt.Sprintf("svc-%04d", i)
		objs[i] = renderer.Object{
			APIVersion: "split.smi-spec.io/v1alpha2", Kind: "TrafficSplit", Namespace: ns, Name: name,
			Migration: "bench", Service: ns + "/" + name,
			YAML: fmt.Appendf(nil, `apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata:
  labels:
    app.kubernetes.io/managed-by: ferry
    ferry.dev/migration: bench
    ferry.dev/service: %s.%s
  name: %s
  namespace: %s
spec:
  backends:
  - service: %s-local
    weight: 0
  - service: %s-local-onprem
    weight: 100
  service: %s
`, ns, name, name, ns, name, name, name),
		}
	}
	return objs
}

// writeCounter counts the requests that can change an object: POST, PUT,
// PATCH and DELETE without dryRun (a server-side dry-run writes nothing).
type writeCounter struct {
	next   http.RoundTripper
	writes *atomic.Int64
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		if !req.URL.Query().Has("dryRun") {
			w.writes.Add(1)
		}
	}
	return w.next.RoundTrip(req)
}

var trafficSplits = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}

// BenchmarkApply1000 applies 1,000 new TrafficSplits into one real API
// server per iteration, then re-applies them unchanged; it reports both
// rates in objects per second, the API writes of the first apply
// (create-writes: shows the counter counts), and for the unchanged
// re-apply the API writes the applier sent (steady-writes) and the objects whose
// resourceVersion moved, inventory ConfigMap included
// (steady-rv-changes). Both must be 0: DESIGN.md's steady-state budget.
func BenchmarkApply1000(b *testing.B) {
	env := cluster.StartT(b, "bench")
	cfg := rest.CopyConfig(env.Clusters["bench"].Config)
	var apiWrites atomic.Int64
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &writeCounter{next: rt, writes: &apiWrites}
	})
	a, err := apply.New(cfg, "bench", apply.Options{QPS: 1000, Burst: 2000})
	if err != nil {
		b.Fatal(err)
	}
	dyn := env.Clusters["bench"].Dynamic
	kube := env.Clusters["bench"].Client
	// versions returns the resourceVersion of every TrafficSplit in ns and
	// of the migration's inventory.
	versions := func(ns string) map[string]string {
		b.Helper()
		list, err := dyn.Resource(trafficSplits).Namespace(ns).List(b.Context(), metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		rv := make(map[string]string, len(list.Items)+1)
		for _, o := range list.Items {
			rv[o.GetName()] = o.GetResourceVersion()
		}
		cm, err := kube.CoreV1().ConfigMaps(apply.InventoryNamespace).Get(b.Context(), apply.InventoryName(ns), metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		rv["inventory"] = cm.ResourceVersion
		return rv
	}
	var create, steady time.Duration
	var createWrites, steadyWrites, rvChanges int64
	i := 0
	for b.Loop() {
		ns := fmt.Sprintf("bench-%d", i)
		i++
		mustNamespace(b, kube, ns)
		objs := splits(ns, 1000)
		writes := apiWrites.Load()
		start := time.Now()
		if _, err := a.Apply(b.Context(), ns, objs); err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		b.StopTimer()
		before := versions(ns)
		if len(before) != len(objs)+1 {
			b.Fatalf("%d TrafficSplits live, want %d", len(before)-1, len(objs))
		}
		createWrites += apiWrites.Load() - writes
		writes = apiWrites.Load()
		b.StartTimer()
		start = time.Now()
		cs, err := a.Apply(b.Context(), ns, objs)
		if err != nil {
			b.Fatal(err)
		}
		steady += time.Since(start)
		b.StopTimer()
		steadyWrites += apiWrites.Load() - writes
		for name, v := range versions(ns) {
			if before[name] != v {
				rvChanges++
			}
		}
		b.StartTimer()
		if cs.Count(apply.ActionUnchanged) != len(objs) {
			b.Fatalf("steady state: %d unchanged of %d", cs.Count(apply.ActionUnchanged), len(objs))
		}
	}
	b.ReportMetric(float64(1000*i)/create.Seconds(), "created-objects/s")
	b.ReportMetric(float64(1000*i)/steady.Seconds(), "unchanged-objects/s")
	b.ReportMetric(float64(createWrites)/float64(i), "create-writes")
	b.ReportMetric(float64(steadyWrites)/float64(i), "steady-writes")
	b.ReportMetric(float64(rvChanges)/float64(i), "steady-rv-changes")
}
