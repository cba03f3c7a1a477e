package state_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

func TestEvents(t *testing.T) {
	at := func(step, weight int) plans.Progress { return progressAt(step, weight, t0) }
	with := func(p plans.Progress, f func(*plans.Progress)) plans.Progress { f(&p); return p }
	round := []plans.GateResult{{Gate: "success-rate", Verdict: plans.Fail, Reason: "success-rate 0.98 < 0.995", At: t0}}
	tests := []struct {
		name   string
		before plans.Progress
		d      plans.Decision
		want   []string
	}{
		{
			name:   "a new promotion",
			before: at(1, 5),
			d:      plans.Decision{Action: plans.ActionPromote, Step: 2, Weight: 25, Progress: with(at(1, 5), func(p *plans.Progress) { p.Pending, p.PendingWeight = 2, 25 })},
			want:   []string{"promote 5->25 step 1 to 2"},
		},
		{
			name:   "the same promotion driven again after a restart",
			before: with(at(1, 5), func(p *plans.Progress) { p.Pending, p.PendingWeight = 2, 25 }),
			d:      plans.Decision{Action: plans.ActionPromote, Step: 2, Weight: 25, Progress: with(at(1, 5), func(p *plans.Progress) { p.Pending, p.PendingWeight = 2, 25 })},
		},
		{
			name:   "a new reason to hold, with the gate round",
			before: at(1, 5),
			d: plans.Decision{Action: plans.ActionHold, Step: 1, Weight: 5, Blocked: "gate success-rate failed: 0.98 < 0.995", Round: round,
				Progress: with(at(1, 5), func(p *plans.Progress) {
					p.Blocked = "gate success-rate failed: 0.98 < 0.995"
					p.State = plans.StateHolding
				})},
			want: []string{"gates 0->0 fail: success-rate 0.98 < 0.995", "hold 0->0 gate success-rate failed: 0.98 < 0.995"},
		},
		{
			name:   "the same reason, a soak counting down",
			before: with(at(1, 5), func(p *plans.Progress) { p.Blocked = "soaking: 3m12s left" }),
			d:      plans.Decision{Action: plans.ActionNone, Step: 1, Blocked: "soaking: 2m0s left", Progress: at(1, 5)},
		},
		{
			name:   "the same gate failing with another value",
			before: with(at(1, 5), func(p *plans.Progress) { p.Blocked = "gate success-rate failed: 0.98 < 0.995" }),
			d:      plans.Decision{Action: plans.ActionHold, Step: 1, Blocked: "gate success-rate failed: 0.97 < 0.995", Progress: at(1, 5)},
		},
		{
			name:   "another reason",
			before: with(at(1, 5), func(p *plans.Progress) { p.Blocked = "soaking: 3m12s left" }),
			d:      plans.Decision{Action: plans.ActionNone, Step: 1, Blocked: "waiting for window: next tick 2026-11-25T09:00:00+01:00", Progress: at(1, 5)},
			want:   []string{"wait 0->0 waiting for window: next tick 2026-11-25T09:00:00+01:00"},
		},
		{
			name:   "paused",
			before: at(1, 5),
			d: plans.Decision{Action: plans.ActionNone, Step: 1, Blocked: "paused in Git (migration)",
				Progress: with(at(1, 5), func(p *plans.Progress) { p.State = plans.StatePaused; p.Blocked = "paused in Git (migration)" })},
			want: []string{"pause 0->0 paused in Git (migration)"},
		},
		{
			name:   "a rollback",
			before: at(3, 50),
			d: plans.Decision{Action: plans.ActionRollback, Step: 0, Blocked: "rolled back in Git (migration)",
				Progress: with(at(3, 50), func(p *plans.Progress) { p.Pending, p.State = 0, plans.StateRollingBack })},
			want: []string{"rollback 50->0 rolled back in Git (migration)"},
		},
		{
			name:   "complete",
			before: at(4, 100),
			d:      plans.Decision{Action: plans.ActionComplete, Step: 4, Weight: 100, Progress: with(at(4, 100), func(p *plans.Progress) { p.State = plans.StateComplete })},
			want:   []string{"complete 0->0 soaked at weight 100"},
		},
		{
			name:   "forget",
			before: at(0, 0),
			d:      plans.Decision{Action: plans.ActionForget, Blocked: "removed from the plan", Progress: at(0, 0)},
			want:   []string{"forget 0->0 removed from the plan"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.d.Service, tt.d.Wave = "shop/db", "backends"
			p := plans.Plan{Migration: "shop", At: t0, Decisions: []plans.Decision{tt.d}}
			var got []string
			for _, e := range state.Events(map[string]plans.Progress{"shop/db": tt.before}, p, "abc") {
				if e.Migration != "shop" || e.Service != "shop/db" || e.Wave != "backends" || e.Commit != "abc" || e.Actor != "ferry" || !e.At.Equal(t0) {
					t.Errorf("event %+v", e)
				}
				got = append(got, fmt.Sprintf("%s %d->%d %s", e.Kind, e.From, e.To, e.Reason))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}
