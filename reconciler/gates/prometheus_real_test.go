package gates_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
	"github.com/ferry-dev/ferry/test/prom"
)

// successRate is the share of requests of a cluster's workload that did not
// fail, as a real plan would query it (without rate(), so that the test
// controls the value exactly).
const successRate = `sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}",code="200"}) / sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}"})`

const errorRate = `sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}",code="500"}) / sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}"})`

// TestPrometheusReal runs the prometheus gate against a real Prometheus
// scraping two workloads, standing for the service on the from cluster
// (onprem) and on the to cluster (eks).
func TestPrometheusReal(t *testing.T) {
	onprem, eks, idle := prom.NewWorkload(t), prom.NewWorkload(t), prom.NewWorkload(t)
	srv := prom.Start(t,
		prom.Scrape{Job: "db", Addr: onprem.Addr(), Labels: map[string]string{"cluster": "onprem"}},
		prom.Scrape{Job: "db", Addr: eks.Addr(), Labels: map[string]string{"cluster": "eks"}},
		prom.Scrape{Job: "db", Addr: idle.Addr(), Labels: map[string]string{"cluster": "idle"}},
	)
	m := migration()
	e := &gates.Evaluator{Clusters: map[string]*plans.Cluster{
		"onprem": {Name: "onprem", Prometheus: srv.URL},
		"eks":    {Name: "eks", Prometheus: srv.URL},
		"idle":   {Name: "idle", Prometheus: srv.URL},
		"gone":   {Name: "gone", Prometheus: srv.URL},
	}}
	// set changes what a workload reports and waits until Prometheus has
	// scraped it.
	set := func(w *prom.Workload, cluster string, success, errors int) {
		t.Helper()
		w.Set(success, errors)
		for code, n := range map[string]int{"200": success, "500": errors} {
			want := float64(n)
			srv.WaitT(t, prom.RequestsMetric+`{cluster="`+cluster+`",code="`+code+`"}`, func(v float64) bool { return v == want }, 15*time.Second)
		}
	}
	threshold := func(cluster string) plans.Gate {
		return plans.Gate{Name: "success-rate", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{
			Query: successRate, Cluster: cluster, Op: ">=", Threshold: 0.995, Timeout: 2 * time.Second,
		}}
	}
	baseline := plans.Gate{Name: "error-rate", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{
		Query: errorRate, Op: "<=", Baseline: 1.5, Timeout: 2 * time.Second,
	}}

	set(onprem, "onprem", 990, 10)
	set(eks, "eks", 998, 2)
	t.Run("pass", func(t *testing.T) {
		r := e.Evaluate(t.Context(), threshold(""), target(m))
		if diff := cmp.Diff(verdict{plans.Pass, "success-rate 0.998 >= 0.995"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if r.Value != 0.998 {
			t.Errorf("value %v", r.Value)
		}
	})
	t.Run("baseline pass", func(t *testing.T) {
		r := e.Evaluate(t.Context(), baseline, target(m))
		if diff := cmp.Diff(verdict{plans.Pass, "error-rate 0.002 <= 0.015 (1.5 × 0.01 on onprem)"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	set(eks, "eks", 981, 19)
	t.Run("fail", func(t *testing.T) {
		r := e.Evaluate(t.Context(), threshold(""), target(m))
		if diff := cmp.Diff(verdict{plans.Fail, "success-rate 0.981 < 0.995"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("baseline fail", func(t *testing.T) {
		r := e.Evaluate(t.Context(), baseline, target(m))
		if diff := cmp.Diff(verdict{plans.Fail, "error-rate 0.019 > 0.015 (1.5 × 0.01 on onprem)"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("baseline follows the from cluster", func(t *testing.T) {
		set(onprem, "onprem", 980, 20) // the source is worse than we thought
		r := e.Evaluate(t.Context(), baseline, target(m))
		if diff := cmp.Diff(verdict{plans.Pass, "error-rate 0.019 <= 0.03 (1.5 × 0.02 on onprem)"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("empty result", func(t *testing.T) {
		r := e.Evaluate(t.Context(), threshold("gone"), target(m))
		if diff := cmp.Diff(verdict{plans.Inconclusive, "success-rate: no data on gone"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("NaN", func(t *testing.T) {
		// No request at all: 0/0.
		srv.WaitT(t, `sum(`+prom.RequestsMetric+`{cluster="idle"})`, func(v float64) bool { return v == 0 }, 15*time.Second)
		r := e.Evaluate(t.Context(), threshold("idle"), target(m))
		if diff := cmp.Diff(verdict{plans.Inconclusive, "success-rate: query on idle: value is NaN"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("NaN from a scraped gauge", func(t *testing.T) {
		idle.SetGauge(`ferry_test_latency_seconds{cluster_hint="x"}`, math.NaN())
		srv.WaitT(t, `count(ferry_test_latency_seconds{cluster="idle"})`, func(v float64) bool { return v == 1 }, 15*time.Second)
		g := plans.Gate{Name: "latency", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{
			Query: `ferry_test_latency_seconds{cluster="{{.Cluster}}"}`, Cluster: "idle", Op: "<", Threshold: 0.25,
		}}
		r := e.Evaluate(t.Context(), g, target(m))
		if diff := cmp.Diff(verdict{plans.Inconclusive, "latency: query on idle: value is NaN"}, verdictOf(r)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a bad query", func(t *testing.T) {
		g := threshold("")
		g.Prometheus.Query = "sum(("
		r := e.Evaluate(t.Context(), g, target(m))
		if r.Verdict != plans.Inconclusive || !strings.Contains(r.Reason, "bad_data") {
			t.Errorf("got %s %q, want inconclusive bad_data", r.Verdict, r.Reason)
		}
	})
	t.Run("Prometheus stopped", func(t *testing.T) {
		srv.Stop()
		for _, g := range []plans.Gate{threshold(""), baseline} {
			r := e.Evaluate(t.Context(), g, target(m))
			if r.Verdict != plans.Inconclusive || !strings.Contains(r.Reason, "connection refused") {
				t.Errorf("%s: got %s %q, want inconclusive, connection refused", g.Name, r.Verdict, r.Reason)
			}
		}
	})
}
