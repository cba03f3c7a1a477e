package e2e

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/prom"
)

func faultPromPlan(promURL string) string {
	return `clusters:
  a: {context: a, prometheus: "` + promURL + `"}
  b: {context: b, prometheus: "` + promURL + `"}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 20, 40, 60, 80, 100]
    soak: 1s
    analysisInterval: 1s
    window: {schedule: ["@every 1s"]}
    gates:
      - name: success-rate
        prometheus:
          query: 'sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}",code="200"}) / sum(` + prom.RequestsMetric + `{cluster="{{.Cluster}}"})'
          op: ">="
          threshold: 0.99
          timeout: 2s
    waves:
      - name: first
        services: [shop/cart]
`
}

// TestFaultPrometheusNaNAndDown runs a migration whose promotions are
// gated by a success-rate query against a real Prometheus scraping a
// workload that stands for cart on cluster b. Mid-wave the query first
// returns NaN (the workload's counters reset to zero: 0/0), then, after
// it recovers and the wave moved one step, Prometheus is stopped.
//
// Nothing lost means (invariant 6): an inconclusive gate holds the wave;
// it never promotes it and never rolls it back, although the migration
// rolls back on failure (the default onFailure) — for several seconds of
// each fault (gate rounds every second) the weights on both clusters stay
// where they were, the history of that time has inconclusive gate rounds
// saying why (NaN, connection refused) and no promotion or rollback, and
// ferry_gate_results_total counts inconclusive verdicts. When the query
// answers again, the wave moves on.
func TestFaultPrometheusNaNAndDown(t *testing.T) {
	t.Parallel()
	const hold = 6 * time.Second
	work := prom.NewWorkload(t)
	work.Set(1000, 0)
	srv := prom.Start(t, prom.Scrape{Job: "cart", Addr: work.Addr(), Labels: map[string]string{"cluster": "b"}})
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", "cart")
	repo := t.TempDir()
	gitRepo(t, repo, faultPromPlan(srv.URL))
	stateDir := t.TempDir()
	d := startDaemon(t, nil, "--url", "file://"+repo, "--branch", "main", "--kubeconfig", env.Kubeconfig,
		"--state-dir", stateDir, "--out", filepath.Join(t.TempDir(), "out"), "--interval", "300ms")
	store, err := state.NewBolt(stateDir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	weights := func() [2]int64 { return [2]int64{toWeight(t, env, "a", "cart"), toWeight(t, env, "b", "cart")} }

	// holds checks that for hold the weights stay, and that the history
	// of that time has inconclusive rounds mentioning why, and neither
	// promotion nor rollback.
	holds := func(fault, why string) [2]int64 {
		t.Helper()
		time.Sleep(1500 * time.Millisecond) // a round decided before the fault lands
		start, held := time.Now(), weights()
		if held[0] >= 100 {
			t.Fatalf("%s: cart is already at 100%%: no wave left to hold", fault)
		}
		inc0 := d.faultMetric("ferry_gate_results_total", `verdict="inconclusive"`)
		for time.Since(start) < hold {
			if w := weights(); w != held {
				t.Fatalf("%s: cart's splits moved from %v to %v (a, b) while the gate was inconclusive", fault, held, w)
			}
			time.Sleep(200 * time.Millisecond)
		}
		h, err := store.History(t.Context(), "m", "shop/cart")
		if err != nil {
			t.Fatal(err)
		}
		var rounds int
		for _, e := range h {
			if e.At.Before(start) {
				continue
			}
			switch e.Kind {
			case state.EventPromote, state.EventRollback:
				t.Errorf("%s: %s event during the hold: %d→%d %s", fault, e.Kind, e.From, e.To, e.Reason)
			case state.EventGates:
				if !strings.HasPrefix(e.Reason, "inconclusive") || !strings.Contains(e.Reason, why) {
					t.Errorf("%s: gate round %q, want inconclusive saying %q", fault, e.Reason, why)
				}
				rounds++
			}
		}
		inc := d.faultMetric("ferry_gate_results_total", `verdict="inconclusive"`) - inc0
		if rounds < 3 || inc < 3 {
			t.Errorf("%s: %d inconclusive rounds in the history and %g in ferry_gate_results_total over %s, want several (one a second)", fault, rounds, inc, hold)
		}
		t.Logf("%s: held at %d%% for %s: %d inconclusive gate rounds recorded, %g counted, no promotion, no rollback", fault, held[0], hold, rounds, inc)
		return held
	}

	waitFor(t, "cart at 20% on both clusters", 60*time.Second, func() bool { return weights() == [2]int64{20, 20} })
	work.Set(0, 0) // counters reset: the success rate is 0/0
	srv.WaitT(t, `sum(`+prom.RequestsMetric+`{cluster="b",code="200"}) / sum(`+prom.RequestsMetric+`{cluster="b"})`, math.IsNaN, 15*time.Second)
	held := holds("query returns NaN", "value is NaN")

	work.Set(2000, 0)
	recovered := time.Now()
	waitFor(t, "cart moves on once the query answers", 30*time.Second, func() bool { return weights()[0] > held[0] })
	t.Logf("query answers again: cart moved to %d%% %s later", weights()[0], time.Since(recovered).Round(time.Millisecond))

	srv.Stop()
	holds("Prometheus down", "connection refused")
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
