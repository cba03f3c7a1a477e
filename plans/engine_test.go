package plans

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// shop is the migration the engine tests start from: two waves, five
// steps, promotion at 09:00 on weekdays (Berlin), an hour of soak and one
// Prometheus gate; every test edits a copy.
func shop(loc *time.Location) *Migration {
	db := &Service{Namespace: "shop", Name: "db", Wave: "backends"}
	cart := &Service{Namespace: "shop", Name: "cart", Wave: "backends", DependsOn: []string{"shop/db"}}
	web := &Service{Namespace: "shop", Name: "web", Wave: "frontends"}
	return &Migration{
		Name: "shop", From: "onprem", To: "eks", Provider: Linkerd,
		Steps:            []Step{{Weight: 0}, {Weight: 5}, {Weight: 25}, {Weight: 50}, {Weight: 100}},
		Window:           Window{Schedules: []string{"0 9 * * 1-5"}, Timezone: "Europe/Berlin", Location: loc},
		Soak:             time.Hour,
		FailureThreshold: 3,
		OnFailure:        FailRollback,
		Gates: []Gate{{
			Name: "success-rate", Kind: GatePrometheus,
			Prometheus: &PrometheusGate{Query: "x", Op: ">=", Threshold: 0.995},
		}},
		Waves: []*Wave{
			{Name: "backends", Services: []*Service{db, cart}},
			{Name: "frontends", Services: []*Service{web}},
		},
	}
}

// outcome is what the tests compare of a decision.
type outcome struct {
	Action   Action
	Step     int
	State    State
	Pending  int
	Failures int
	Blocked  string
}

func outcomeOf(d *Decision) outcome {
	if d == nil {
		return outcome{Blocked: "<no decision>"}
	}
	return outcome{
		Action: d.Action, Step: d.Step, State: d.Progress.State,
		Pending: d.Progress.Pending, Failures: d.Progress.Failures, Blocked: d.Blocked,
	}
}

// observe returns observations in which every service is ready and every
// gate of m passes at now.
func observe(m *Migration, now time.Time) Observations {
	return passing(m, now)
}

// at returns progress of a service that reached step i (weight w) at since.
func stepAt(i, w int, since time.Time) Progress {
	p := NewProgress(since)
	p.Step, p.Weight, p.State = i, w, StateProgressing
	if i == 0 {
		p.State = StatePending
	}
	return p
}

func completeAt(since time.Time) Progress {
	p := stepAt(4, 100, since)
	p.State = StateComplete
	return p
}

func TestDecide(t *testing.T) {
	loc := berlin(t)
	tick := at(t, loc, "2026-11-24 09:00:30") // a Tuesday, just after a tick
	monday := at(t, loc, "2026-11-23 09:00:10")
	tests := []struct {
		name     string
		now      time.Time
		edit     func(m *Migration)
		progress map[string]Progress
		obs      func(m *Migration, o *Observations)
		service  string
		want     outcome
	}{
		{
			name: "a new service takes its first step at a tick",
			now:  tick, service: "shop/db",
			want: outcome{Action: ActionPromote, Step: 1, State: StateProgressing, Pending: 1},
		},
		{
			name: "and not between ticks",
			now:  at(t, loc, "2026-11-24 12:00"), service: "shop/db",
			want: outcome{Action: ActionNone, Step: 0, State: StatePending, Pending: -1,
				Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name: "a tick missed by more than the grace is not caught up",
			now:  at(t, loc, "2026-11-24 09:20"), service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want: outcome{Action: ActionNone, Step: 1, State: StateProgressing, Pending: -1,
				Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name: "never inside a deny window",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Window.Deny = []Deny{{Reason: "release freeze", From: at(t, loc, "2026-11-24 00:00"), To: at(t, loc, "2026-11-26 00:00")}}
			},
			want: outcome{Action: ActionNone, Step: 0, State: StatePending, Pending: -1,
				Blocked: `in deny window "release freeze" until 2026-11-26T00:00:00+01:00`},
		},
		{
			name: "soaking",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, at(t, loc, "2026-11-24 08:03:42"))},
			want: outcome{Action: ActionNone, Step: 1, State: StateProgressing, Pending: -1,
				Blocked: "soaking: 3m12s left"},
		},
		{
			name: "soaked and due",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want:     outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2},
		},
		{
			name: "a soak gate for one step",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "a-day-at-25", Kind: GateSoak, Steps: []int{50}, Soak: 48 * time.Hour})
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want: outcome{Action: ActionNone, Step: 2, State: StateProgressing, Pending: -1,
				Blocked: "soaking: 23h59m40s left"},
		},
		{
			name: "a failing gate holds and counts",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Value: 0.981, Reason: "success-rate 0.981 < 0.995", At: tick}}
			},
			want: outcome{Action: ActionHold, Step: 1, State: StateHolding, Pending: -1, Failures: 1,
				Blocked: "gate success-rate failed: 0.981 < 0.995"},
		},
		{
			name: "an inconclusive gate holds without counting",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Failures = 2
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Inconclusive, Reason: "success-rate: no data", At: tick}}
			},
			want: outcome{Action: ActionHold, Step: 1, State: StateHolding, Pending: -1, Failures: 2,
				Blocked: "gate success-rate inconclusive: no data"},
		},
		{
			name: "a gate not evaluated holds",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			obs:      func(m *Migration, o *Observations) { delete(o.Gates, "shop/db") },
			want: outcome{Action: ActionNone, Step: 1, State: StateProgressing, Pending: -1,
				Blocked: "gate success-rate not evaluated"},
		},
		{
			name: "a confirmation hook not called while the service waits is no hold",
			now:  at(t, loc, "2026-11-24 12:00"), service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "confirm", Kind: GateWebhook, Webhook: &WebhookGate{URL: "http://127.0.0.1:1/"}})
			},
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = o.Gates["shop/db"][:1] // success-rate only
			},
			want: outcome{Action: ActionNone, Step: 1, State: StateProgressing, Pending: -1,
				Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name: "a result from before the step does not count as passing",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"][0].At = monday.Add(-time.Minute)
			},
			want: outcome{Action: ActionNone, Step: 1, State: StateProgressing, Pending: -1,
				Blocked: "gate success-rate not evaluated since 2026-11-23T09:00:10+01:00"},
		},
		{
			name: "the third consecutive failure rolls back to 0 at once",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(3, 50, monday)
				p.Failures = 2
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "success-rate 0.9 < 0.995", At: tick}}
			},
			want: outcome{Action: ActionRollback, Step: 0, State: StateRollingBack, Pending: 0,
				Blocked: "rolled back: gate success-rate failed: 0.9 < 0.995 (3 consecutive failures); run ferry resume to start again"},
		},
		{
			name: "onFailure hold freezes instead",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) { m.OnFailure = FailHold },
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(3, 50, monday)
				p.Failures = 2
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "success-rate 0.9 < 0.995", At: tick}}
			},
			want: outcome{Action: ActionHold, Step: 3, State: StateHolding, Pending: -1, Failures: 3,
				Blocked: "held: gate success-rate failed: 0.9 < 0.995 (3 consecutive failures); run ferry resume"},
		},
		{
			name: "a failure while soaking counts too",
			now:  at(t, loc, "2026-11-24 15:00"), service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(3, 50, at(t, loc, "2026-11-24 09:01"))
				p.Failures = 2
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "success-rate 0.9 < 0.995", At: at(t, loc, "2026-11-24 15:00")}}
			},
			want: outcome{Action: ActionRollback, Step: 0, State: StateRollingBack, Pending: 0,
				Blocked: "rolled back: gate success-rate failed: 0.9 < 0.995 (3 consecutive failures); run ferry resume to start again"},
		},
		{
			name: "a round already counted is not counted again",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Failures = 1
				p.Gates = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "success-rate 0.9 < 0.995", At: tick}}
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "success-rate 0.9 < 0.995", At: tick}}
			},
			want: outcome{Action: ActionHold, Step: 1, State: StateHolding, Pending: -1, Failures: 1,
				Blocked: "gate success-rate failed: 0.9 < 0.995"},
		},
		{
			name: "a pass resets the failure count",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Failures = 2
				return p
			}()},
			want: outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2},
		},
		{
			name: "an approval gate waits for an approval",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "sign-off", Kind: GateApproval, Steps: []int{50}})
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want: outcome{Action: ActionHold, Step: 2, State: StateHolding, Pending: -1,
				Blocked: "waiting for approval of step 50"},
		},
		{
			name: "approved in Git",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "sign-off", Kind: GateApproval, Steps: []int{50}})
				m.Approvals = []Approval{{Wave: "backends", Step: 50, By: "alice"}}
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want:     outcome{Action: ActionPromote, Step: 3, State: StateProgressing, Pending: 3},
		},
		{
			name: "approved in Git for another step",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "sign-off", Kind: GateApproval})
				m.Approvals = []Approval{{Service: "shop/db", Step: 100, By: "alice"}}
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want: outcome{Action: ActionHold, Step: 2, State: StateHolding, Pending: -1,
				Blocked: "waiting for approval of step 50"},
		},
		{
			name: "approved with ferry approve",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Gates = append(m.Gates, Gate{Name: "sign-off", Kind: GateApproval, Steps: []int{50}})
			},
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(2, 25, monday)
				p.Approvals = []CLIApproval{{Step: 50, By: "bob", At: monday}}
				return p
			}()},
			want: outcome{Action: ActionPromote, Step: 3, State: StateProgressing, Pending: 3},
		},
		{
			name: "the target backend is not ready",
			now:  tick, service: "shop/db",
			obs: func(m *Migration, o *Observations) {
				o.Readiness["shop/db"] = Readiness{Reason: "no ready endpoints"}
			},
			want: outcome{Action: ActionHold, Step: 0, State: StateHolding, Pending: -1,
				Blocked: "backend on eks not ready: no ready endpoints"},
		},
		{
			name: "readiness unknown",
			now:  tick, service: "shop/db",
			obs: func(m *Migration, o *Observations) { delete(o.Readiness, "shop/db") },
			want: outcome{Action: ActionHold, Step: 0, State: StateHolding, Pending: -1,
				Blocked: "readiness of the backend on eks unknown"},
		},
		{
			name: "a service waits for the services it depends on",
			now:  tick, service: "shop/cart",
			want: outcome{Action: ActionNone, Step: 0, State: StatePending, Pending: -1,
				Blocked: "waiting for shop/db to complete"},
		},
		{
			name: "and starts once they are complete",
			now:  tick, service: "shop/cart",
			progress: map[string]Progress{"shop/db": completeAt(monday)},
			want:     outcome{Action: ActionPromote, Step: 1, State: StateProgressing, Pending: 1},
		},
		{
			name: "a wave waits for the one before",
			now:  tick, service: "shop/web",
			progress: map[string]Progress{"shop/db": completeAt(monday)},
			want: outcome{Action: ActionNone, Step: 0, State: StatePending, Pending: -1,
				Blocked: `waiting for wave "backends" to complete`},
		},
		{
			name: "and starts once it is complete",
			now:  tick, service: "shop/web",
			progress: map[string]Progress{"shop/db": completeAt(monday), "shop/cart": completeAt(monday)},
			want:     outcome{Action: ActionPromote, Step: 1, State: StateProgressing, Pending: 1},
		},
		{
			name: "maxConcurrent",
			now:  tick, service: "shop/cart",
			edit: func(m *Migration) {
				m.MaxConcurrent = 1
				m.Waves[0].Services[1].DependsOn = nil
			},
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want: outcome{Action: ActionNone, Step: 0, State: StatePending, Pending: -1,
				Blocked: `waiting for a free slot: 1 of 1 services of wave "backends" moving`},
		},
		{
			name: "a wave's maxConcurrent overrides the migration's",
			now:  tick, service: "shop/cart",
			edit: func(m *Migration) {
				m.MaxConcurrent = 1
				m.Waves[0].MaxConcurrent = 2
				m.Waves[0].Services[1].DependsOn = nil
			},
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want:     outcome{Action: ActionPromote, Step: 1, State: StateProgressing, Pending: 1},
		},
		{
			name: "paused in Git",
			now:  tick, service: "shop/db",
			edit:     func(m *Migration) { m.Paused = true },
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want: outcome{Action: ActionNone, Step: 1, State: StatePaused, Pending: -1,
				Blocked: "paused in Git (migration)"},
		},
		{
			name: "a wave paused in Git",
			now:  tick, service: "shop/db",
			edit:     func(m *Migration) { m.Waves[0].Paused = true },
			progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)},
			want: outcome{Action: ActionNone, Step: 1, State: StatePaused, Pending: -1,
				Blocked: `paused in Git (wave "backends")`},
		},
		{
			name: "resumed in Git",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.State = StatePaused
				return p
			}()},
			want: outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2},
		},
		{
			name: "paused with ferry pause",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Override = &Override{Action: OverridePause, By: "carol", At: monday}
				return p
			}()},
			want: outcome{Action: ActionNone, Step: 1, State: StatePaused, Pending: -1,
				Blocked: "paused by carol at 2026-11-23T09:00:10+01:00"},
		},
		{
			name: "a complete service stays complete when paused",
			now:  tick, service: "shop/db",
			edit:     func(m *Migration) { m.Paused = true },
			progress: map[string]Progress{"shop/db": completeAt(monday)},
			want:     outcome{Action: ActionNone, Step: 4, State: StateComplete, Pending: -1},
		},
		{
			name: "rolled back in Git, whatever the window",
			now:  at(t, loc, "2026-11-24 23:00"), service: "shop/db",
			edit:     func(m *Migration) { m.Rollback = true; m.Paused = true },
			progress: map[string]Progress{"shop/db": stepAt(3, 50, monday)},
			want: outcome{Action: ActionRollback, Step: 0, State: StateRollingBack, Pending: 0,
				Blocked: "rolled back in Git (migration)"},
		},
		{
			name: "a wave rolled back in Git",
			now:  tick, service: "shop/db",
			edit:     func(m *Migration) { m.Waves[0].Rollback = true },
			progress: map[string]Progress{"shop/db": completeAt(monday)},
			want: outcome{Action: ActionRollback, Step: 0, State: StateRollingBack, Pending: 0,
				Blocked: `rolled back in Git (wave "backends")`},
		},
		{
			name: "a service rolled back in Git stays at 0",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) { m.Waves[0].Services[0].Rollback = true },
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(0, 0, monday)
				p.State = StateRolledBack
				return p
			}()},
			want: outcome{Action: ActionNone, Step: 0, State: StateRolledBack, Pending: -1,
				Blocked: "rolled back in Git (service)"},
		},
		{
			name: "and starts again when the flag goes",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(0, 0, monday)
				p.State = StateRolledBack
				return p
			}()},
			want: outcome{Action: ActionPromote, Step: 1, State: StateProgressing, Pending: 1},
		},
		{
			name: "a rollback waits for the from backend",
			now:  tick, service: "shop/db",
			edit:     func(m *Migration) { m.Rollback = true },
			progress: map[string]Progress{"shop/db": stepAt(3, 50, monday)},
			obs: func(m *Migration, o *Observations) {
				o.FromReadiness = map[string]Readiness{"shop/db": {Reason: "0/3 endpoints ready"}}
			},
			want: outcome{Action: ActionHold, Step: 3, State: StateRollingBack, Pending: -1,
				Blocked: "rollback waits: backend on onprem not ready: 0/3 endpoints ready"},
		},
		{
			name: "at 100, soaking before complete",
			now:  tick, service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(4, 100, at(t, loc, "2026-11-24 08:30"))},
			want: outcome{Action: ActionNone, Step: 4, State: StateProgressing, Pending: -1,
				Blocked: "soaking: 29m30s left"},
		},
		{
			name: "at 100 and soaked, complete without waiting for a tick",
			now:  at(t, loc, "2026-11-24 13:00"), service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(4, 100, monday)},
			want:     outcome{Action: ActionComplete, Step: 4, State: StateComplete, Pending: -1},
		},
		{
			name: "at 100 with a failing gate, not complete",
			now:  at(t, loc, "2026-11-24 13:00"), service: "shop/db",
			progress: map[string]Progress{"shop/db": stepAt(4, 100, monday)},
			obs: func(m *Migration, o *Observations) {
				o.Gates["shop/db"] = []GateResult{{Gate: "success-rate", Verdict: Fail, Reason: "0.99 < 0.995", At: at(t, loc, "2026-11-24 13:00")}}
			},
			want: outcome{Action: ActionHold, Step: 4, State: StateHolding, Pending: -1, Failures: 1,
				Blocked: "gate success-rate failed: 0.99 < 0.995"},
		},
		{
			name: "a move in flight is driven again, not a second step",
			now:  at(t, loc, "2026-11-25 09:00:05"), service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Pending, p.PendingWeight = 2, 25
				return p
			}()},
			want: outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2},
		},
		{
			name: "a move in flight to a backend no longer ready is dropped",
			now:  at(t, loc, "2026-11-24 12:00"), service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Pending, p.PendingWeight = 2, 25
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Readiness["shop/db"] = Readiness{Reason: "no endpoints"}
			},
			want: outcome{Action: ActionHold, Step: 1, State: StateHolding, Pending: -1,
				Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name: "a move in flight is held, not dropped, while its cluster cannot be asked",
			now:  at(t, loc, "2026-11-24 12:00"), service: "shop/db",
			progress: map[string]Progress{"shop/db": func() Progress {
				p := stepAt(1, 5, monday)
				p.Pending, p.PendingWeight = 2, 25
				return p
			}()},
			obs: func(m *Migration, o *Observations) {
				o.Readiness["shop/db"] = Readiness{Unknown: true, Reason: "cluster eks: readiness unknown: connection refused"}
			},
			want: outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2,
				Blocked: "move held in flight: cluster eks: readiness unknown: connection refused"},
		},
		{
			name: "readiness that cannot be asked starts no move",
			now:  tick, service: "shop/db",
			obs: func(m *Migration, o *Observations) {
				o.Readiness["shop/db"] = Readiness{Unknown: true, Reason: "connection refused"}
			},
			want: outcome{Action: ActionHold, Step: 0, State: StateHolding, Pending: -1,
				Blocked: "backend on eks not ready: connection refused"},
		},
		{
			name: "steps edited: the recorded weight maps to the highest step not above it",
			now:  at(t, loc, "2026-11-24 12:00"), service: "shop/db",
			edit: func(m *Migration) {
				m.Steps = []Step{{Weight: 0}, {Weight: 10}, {Weight: 20}, {Weight: 30}, {Weight: 60}, {Weight: 100}}
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want: outcome{Action: ActionNone, Step: 2, State: StateProgressing, Pending: -1,
				Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name: "steps edited: a step inserted below",
			now:  tick, service: "shop/db",
			edit: func(m *Migration) {
				m.Steps = []Step{{Weight: 0}, {Weight: 1}, {Weight: 5}, {Weight: 25}, {Weight: 50}, {Weight: 100}}
			},
			progress: map[string]Progress{"shop/db": stepAt(2, 25, monday)},
			want:     outcome{Action: ActionPromote, Step: 4, State: StateProgressing, Pending: 4},
		},
		{
			name: "a service removed from the plan goes to weight 0 first",
			now:  at(t, loc, "2026-11-24 23:00"), service: "shop/old",
			progress: map[string]Progress{"shop/old": stepAt(2, 25, monday)},
			want: outcome{Action: ActionRetire, Step: 0, State: StateRollingBack, Pending: 0,
				Blocked: "removed from the plan"},
		},
		{
			name: "then it is forgotten",
			now:  at(t, loc, "2026-11-24 23:00"), service: "shop/old",
			progress: map[string]Progress{"shop/old": func() Progress {
				p := stepAt(0, 0, monday)
				p.State = StateRolledBack
				return p
			}()},
			want: outcome{Action: ActionForget, Step: 0, State: StateRolledBack, Pending: -1,
				Blocked: "removed from the plan"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := shop(loc)
			if tt.edit != nil {
				tt.edit(m)
			}
			obs := observe(m, tt.now)
			if tt.obs != nil {
				tt.obs(m, &obs)
			}
			plan := Decide(tt.now, m, tt.progress, obs)
			got := outcomeOf(plan.Decision(tt.service))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision for %s (-want +got):\n%s", tt.service, diff)
			}
		})
	}
}

func TestDecideDoesNotModifyProgress(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	now := at(t, loc, "2026-11-24 09:00:30")
	p := stepAt(1, 5, at(t, loc, "2026-11-23 09:00"))
	p.Gates = []GateResult{{Gate: "success-rate", Verdict: Pass, At: at(t, loc, "2026-11-23 10:00")}}
	p.Approvals = []CLIApproval{{Step: 25, By: "bob"}}
	progress := map[string]Progress{"shop/db": p}
	before := cloneProgress(progress)
	m.Rollback = true
	Decide(now, m, progress, observe(m, now))
	m.Rollback = false
	Decide(now, m, progress, observe(m, now))
	if diff := cmp.Diff(before, progress); diff != "" {
		t.Errorf("Decide modified its input (-before +after):\n%s", diff)
	}
}

func cloneProgress(in map[string]Progress) map[string]Progress {
	out := maps.Clone(in)
	for k, p := range out {
		p.Gates = append([]GateResult(nil), p.Gates...)
		p.Approvals = append([]CLIApproval(nil), p.Approvals...)
		out[k] = p
	}
	return out
}

func TestComplete(t *testing.T) {
	loc := berlin(t)
	since := at(t, loc, "2026-11-23 09:00")
	now := at(t, loc, "2026-11-24 09:00:31")
	p := stepAt(1, 5, since)
	p.Pending, p.PendingWeight = 2, 25
	got := Complete(p, now)
	want := stepAt(2, 25, now)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Complete promotion (-want +got):\n%s", diff)
	}
	p = stepAt(3, 50, since)
	p.Pending, p.PendingWeight, p.State = 0, 0, StateRollingBack
	got = Complete(p, now)
	want = stepAt(0, 0, now)
	want.State = StateRolledBack
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Complete rollback (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stepAt(1, 5, since), Complete(stepAt(1, 5, since), now)); diff != "" {
		t.Errorf("Complete without a move in flight changed progress:\n%s", diff)
	}
}

// daemon drives one migration the way ferry run does, on a fake clock: at
// each call it decides, saves the intent, applies (a no-op), and completes
// the moves. It records every move so tests can check the invariants.
type daemon struct {
	t        *testing.T
	m        *Migration
	progress map[string]Progress
	moves    []move
	// gates returns the results for a service at now; nil means all pass.
	gates func(ref string, now time.Time) []GateResult
	// crash, when set, makes the next call stop after saving the intent.
	crash bool
}

type move struct {
	At       time.Time
	Service  string
	Action   Action
	From, To int // weights
}

func (d *daemon) String() string {
	var b strings.Builder
	for _, mv := range d.moves {
		fmt.Fprintf(&b, "%s %s %s %d->%d\n", mv.At.Format("2006-01-02 15:04 -0700"), mv.Service, mv.Action, mv.From, mv.To)
	}
	return b.String()
}

func (d *daemon) run(now time.Time) Plan {
	d.t.Helper()
	obs := passing(d.m, now)
	if d.gates != nil {
		for _, s := range d.m.Services() {
			if rs := d.gates(s.Ref(), now); rs != nil {
				obs.Gates[s.Ref()] = rs
			}
		}
	}
	plan := Decide(now, d.m, d.progress, obs)
	saved := plan.Progress() // the write-ahead save
	for _, dec := range plan.Decisions {
		if dec.Action == ActionForget {
			continue
		}
		old := d.progress[dec.Service]
		if dec.Progress.Pending != NoPending && old.Pending != dec.Progress.Pending {
			d.moves = append(d.moves, move{At: now, Service: dec.Service, Action: dec.Action, From: old.Weight, To: dec.Weight})
		}
	}
	d.progress = saved
	if d.crash {
		d.crash = false
		return plan
	}
	for ref, p := range d.progress {
		d.progress[ref] = Complete(p, now)
	}
	return plan
}

// checkOneStep fails when a service moved more than one step up at once or
// twice within one tick's grace.
func (d *daemon) checkOneStep(steps []Step) {
	d.t.Helper()
	idx := map[int]int{}
	for i, s := range steps {
		idx[s.Weight] = i
	}
	last := map[string]time.Time{}
	for _, mv := range d.moves {
		if mv.Action != ActionPromote {
			continue
		}
		if idx[mv.To] != idx[mv.From]+1 {
			d.t.Errorf("%s: %s skipped a step: %d -> %d", mv.At, mv.Service, mv.From, mv.To)
		}
		if l, ok := last[mv.Service]; ok && mv.At.Sub(l) < TickGrace {
			d.t.Errorf("%s: %s moved twice within one tick", mv.At, mv.Service)
		}
		last[mv.Service] = mv.At
	}
}

// every runs the daemon every interval from start to end.
func (d *daemon) every(start, end time.Time, interval time.Duration) {
	for now := start; !now.After(end); now = now.Add(interval) {
		d.run(now)
	}
}

func TestMigrationEndToEnd(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	// Daily ticks at 02:30 so that the run crosses the change to summer
	// time on 2026-03-29, when 02:30 does not exist.
	m.Window.Schedules = []string{"30 2 * * *"}
	m.Window.Deny = []Deny{{Reason: "easter", From: at(t, loc, "2026-04-03 00:00"), To: at(t, loc, "2026-04-07 00:00")}}
	d := &daemon{t: t, m: m, progress: map[string]Progress{}}
	start := at(t, loc, "2026-03-23 00:00") // a Monday
	proj := Project(start, m, nil, 60*24*time.Hour)
	d.every(start, at(t, loc, "2026-04-30 00:00"), 5*time.Minute)
	d.checkOneStep(m.Steps)

	// The change to summer time on Sunday 29 March: 02:30 does not exist
	// that night, and cart moves at 03:00, when the clock jumps. Easter is
	// a freeze.
	want := `2026-03-23 02:30 +0100 shop/db promote 0->5
2026-03-24 02:30 +0100 shop/db promote 5->25
2026-03-25 02:30 +0100 shop/db promote 25->50
2026-03-26 02:30 +0100 shop/db promote 50->100
2026-03-27 02:30 +0100 shop/cart promote 0->5
2026-03-28 02:30 +0100 shop/cart promote 5->25
2026-03-29 03:00 +0200 shop/cart promote 25->50
2026-03-30 02:30 +0200 shop/cart promote 50->100
2026-03-31 02:30 +0200 shop/web promote 0->5
2026-04-01 02:30 +0200 shop/web promote 5->25
2026-04-02 02:30 +0200 shop/web promote 25->50
2026-04-07 02:30 +0200 shop/web promote 50->100
`
	if diff := cmp.Diff(want, d.String()); diff != "" {
		t.Errorf("moves (-want +got):\n%s", diff)
	}
	for _, s := range m.Services() {
		if st := d.progress[s.Ref()].State; st != StateComplete {
			t.Errorf("%s: state %s, want complete", s.Ref(), st)
		}
	}
	// The projection made at the start agrees with what happened.
	var got []string
	for _, p := range proj {
		for _, mv := range p.Moves {
			got = append(got, fmt.Sprintf("%s %s promote %d", mv.At.Format("2006-01-02 15:04 -0700"), p.Service, mv.Weight))
		}
	}
	var real []string
	for _, mv := range d.moves {
		real = append(real, fmt.Sprintf("%s %s promote %d", mv.At.Format("2006-01-02 15:04 -0700"), mv.Service, mv.To))
	}
	if diff := cmp.Diff(real, got); diff != "" {
		t.Errorf("projection (-real +projected):\n%s", diff)
	}
	completes := map[string]string{}
	for _, p := range proj {
		completes[p.Service] = p.Complete.Format("2006-01-02 15:04 -0700")
	}
	wantComplete := map[string]string{
		"shop/db":   "2026-03-26 03:30 +0100",
		"shop/cart": "2026-03-30 03:30 +0200",
		"shop/web":  "2026-04-07 03:30 +0200",
	}
	if diff := cmp.Diff(wantComplete, completes); diff != "" {
		t.Errorf("projected completion (-want +got):\n%s", diff)
	}
}
