package plans_test

import (
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/plans"
)

// A daemon's tick: decide, save the intent, apply, complete.
func ExampleDecide() {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	db := &plans.Service{Namespace: "shop", Name: "db", Wave: "backends"}
	m := &plans.Migration{
		Name: "shop", From: "onprem", To: "eks",
		Steps:  []plans.Step{{Weight: 0}, {Weight: 10}, {Weight: 100}},
		Window: plans.Window{Schedules: []string{"0 9 * * 1-5"}, Location: berlin},
		Soak:   time.Hour,
		Gates:  []plans.Gate{{Name: "success-rate", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{Query: "…", Op: ">=", Threshold: 0.995}}},
		Waves:  []*plans.Wave{{Name: "backends", Services: []*plans.Service{db}}},
	}
	progress := map[string]plans.Progress{}
	now := time.Date(2026, 11, 24, 9, 0, 5, 0, berlin)
	obs := plans.Observations{
		Readiness: map[string]plans.Readiness{"shop/db": {Ready: true}},
		Gates:     map[string][]plans.GateResult{"shop/db": {{Gate: "success-rate", Verdict: plans.Pass, At: now}}},
	}

	plan := plans.Decide(now, m, progress, obs)
	d := plan.Decision("shop/db")
	fmt.Println(d.Action, "to weight", d.Weight)
	progress = plan.Progress() // saved before anything is applied
	// ... render plan.Steps() and apply ...
	progress["shop/db"] = plans.Complete(progress["shop/db"], now)

	later := now.Add(10 * time.Minute)
	obs.Gates["shop/db"][0].At = later
	d = plans.Decide(later, m, progress, obs).Decision("shop/db")
	fmt.Println(d.Action, "-", d.Blocked)
	fmt.Println("next tick:", plans.NextTick(later, m.Window).Format(time.RFC3339))
	// Output:
	// promote to weight 10
	// none - soaking: 50m0s left
	// next tick: 2026-11-25T09:00:00+01:00
}
