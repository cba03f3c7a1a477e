package apply_test

import (
	"fmt"
	"testing"
	"time"

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

// BenchmarkApply1000 applies 1,000 new TrafficSplits into one real API
// server per iteration, then re-applies them unchanged; it reports both
// rates in objects per second.
func BenchmarkApply1000(b *testing.B) {
	env := cluster.StartT(b, "bench")
	a, err := apply.New(env.Clusters["bench"].Config, "bench", apply.Options{QPS: 1000, Burst: 2000})
	if err != nil {
		b.Fatal(err)
	}
	var create, steady time.Duration
	i := 0
	for b.Loop() {
		ns := fmt.Sprintf("bench-%d", i)
		i++
		mustNamespace(b, env.Clusters["bench"].Client, ns)
		objs := splits(ns, 1000)
		start := time.Now()
		if _, err := a.Apply(b.Context(), ns, objs); err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		start = time.Now()
		cs, err := a.Apply(b.Context(), ns, objs)
		if err != nil {
			b.Fatal(err)
		}
		steady += time.Since(start)
		if cs.Count(apply.ActionUnchanged) != len(objs) {
			b.Fatalf("steady state: %d unchanged of %d", cs.Count(apply.ActionUnchanged), len(objs))
		}
	}
	b.ReportMetric(float64(1000*i)/create.Seconds(), "created-objects/s")
	b.ReportMetric(float64(1000*i)/steady.Seconds(), "unchanged-objects/s")
}
