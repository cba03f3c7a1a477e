package gates_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
)

// TestObserve runs the engine's two-phase tick: decide what is due,
// evaluate the gates it lists, decide again with the results.
func TestObserve(t *testing.T) {
	var hooks atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hooks.Add(1) }))
	defer hook.Close()
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.999"]}]}}`)
	}))
	defer metrics.Close()

	m := migration()
	m.Waves[0].Services = append(m.Waves[0].Services, &plans.Service{Namespace: "shop", Name: "cart", Wave: "backends"})
	m.Window = plans.Window{Schedules: []string{"0 9 * * *"}, Location: time.UTC}
	m.Soak = time.Hour
	m.Gates = []plans.Gate{
		{Name: "success-rate", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{Query: "x", Op: ">=", Threshold: 0.995}},
		{Name: "confirm", Kind: plans.GateWebhook, Webhook: &plans.WebhookGate{URL: hook.URL}},
	}
	e := &gates.Evaluator{Clusters: map[string]*plans.Cluster{"eks": {Name: "eks", Prometheus: metrics.URL}}}
	yesterday := now.Add(-24 * time.Hour)
	db := plans.NewProgress(yesterday) // due: soaked, at a tick
	db.Step, db.Weight, db.State = 1, 5, plans.StateProgressing
	cart := plans.NewProgress(now.Add(-10 * time.Minute)) // soaking
	cart.Step, cart.Weight, cart.State = 1, 5, plans.StateProgressing
	progress := map[string]plans.Progress{"shop/db": db, "shop/cart": cart}
	obs := plans.Observations{Readiness: map[string]plans.Readiness{"shop/db": {Ready: true}, "shop/cart": {Ready: true}}}

	first := plans.Decide(now, m, progress, obs)
	obs.Gates = e.Observe(t.Context(), m, first, "abc", now)
	if n := len(obs.Gates["shop/db"]); n != 2 {
		t.Errorf("due service: %d results, want 2 (query and hook)", n)
	}
	if n := len(obs.Gates["shop/cart"]); n != 1 || obs.Gates["shop/cart"][0].Gate != "success-rate" {
		t.Errorf("soaking service: %+v, want the query only", obs.Gates["shop/cart"])
	}
	if hooks.Load() != 1 {
		t.Errorf("the hook was called %d times, want once", hooks.Load())
	}
	second := plans.Decide(now, m, progress, obs)
	if d := second.Decision("shop/db"); d.Action != plans.ActionPromote || d.Weight != 25 {
		t.Errorf("db: %s to %d (%s), want promote to 25", d.Action, d.Weight, d.Blocked)
	}
	if d := second.Decision("shop/cart"); d.Action != plans.ActionNone || d.Blocked != "soaking: 50m0s left" {
		t.Errorf("cart: %s %q", d.Action, d.Blocked)
	}
}
