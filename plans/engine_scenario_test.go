package plans

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriteAheadResume(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	monday := at(t, loc, "2026-11-23 09:00:10")
	d := &daemon{t: t, m: m, progress: map[string]Progress{"shop/db": stepAt(1, 5, monday)}}

	// The daemon saves the intent and dies before applying.
	d.crash = true
	tick := at(t, loc, "2026-11-24 09:00:20")
	d.run(tick)
	p := d.progress["shop/db"]
	if p.Pending != 2 || p.PendingWeight != 25 || p.Step != 1 || !p.Since.Equal(monday) {
		t.Fatalf("after the crash: step %d pending %d (weight %d) since %s; want step 1 pending 2 (25) since %s",
			p.Step, p.Pending, p.PendingWeight, p.Since, monday)
	}

	// Restarted two hours later, long after the tick's grace: the same
	// target is driven again, the soak clock untouched.
	later := tick.Add(2 * time.Hour)
	plan := Decide(later, m, d.progress, passing(m, later))
	got := outcomeOf(plan.Decision("shop/db"))
	want := outcome{Action: ActionPromote, Step: 2, State: StateProgressing, Pending: 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("re-driven decision (-want +got):\n%s", diff)
	}
	if since := plan.Decision("shop/db").Progress.Since; !since.Equal(monday) {
		t.Errorf("re-driving reset the soak clock to %s", since)
	}
	// Driving it again and again changes nothing.
	again := Decide(later, m, plan.Progress(), passing(m, later))
	if diff := cmp.Diff(plan.Decision("shop/db"), again.Decision("shop/db")); diff != "" {
		t.Errorf("re-driving is not idempotent (-first +second):\n%s", diff)
	}

	d.run(later)
	p = d.progress["shop/db"]
	if p.Step != 2 || p.Pending != NoPending || !p.Since.Equal(later) {
		t.Errorf("after the re-drive: step %d pending %d since %s; want step 2, none, %s", p.Step, p.Pending, p.Since, later)
	}
	// No second step before the next tick.
	d.every(later, at(t, loc, "2026-11-25 08:59"), 10*time.Minute)
	if p := d.progress["shop/db"]; p.Step != 2 {
		t.Errorf("moved to step %d before the next tick", p.Step)
	}
	d.run(at(t, loc, "2026-11-25 09:00"))
	if p := d.progress["shop/db"]; p.Step != 3 {
		t.Errorf("at the next tick: step %d, want 3", p.Step)
	}
	d.checkOneStep(m.Steps)
}

func TestConsecutiveFailuresRollBack(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	m.Window.Schedules = []string{"0 * * * *"} // hourly
	m.Soak = 0
	failing := false
	d := &daemon{t: t, m: m, progress: map[string]Progress{}}
	d.gates = func(ref string, now time.Time) []GateResult {
		if ref == "shop/db" && failing {
			return []GateResult{{Gate: "success-rate", Verdict: Fail, Value: 0.9, Reason: "success-rate 0.9 < 0.995", At: now}}
		}
		return nil
	}
	start := at(t, loc, "2026-11-24 09:00")
	d.every(start, start.Add(2*time.Hour+30*time.Minute), time.Minute)
	if p := d.progress["shop/db"]; p.Step != 3 {
		t.Fatalf("before failing: step %d, want 3", p.Step)
	}
	failing = true
	d.run(start.Add(3*time.Hour + 1*time.Minute))
	d.run(start.Add(3*time.Hour + 2*time.Minute))
	if p := d.progress["shop/db"]; p.Step != 3 || p.Failures != 2 || p.State != StateHolding {
		t.Fatalf("after two failures: step %d failures %d state %s", p.Step, p.Failures, p.State)
	}
	plan := d.run(start.Add(3*time.Hour + 3*time.Minute))
	if dec := plan.Decision("shop/db"); dec.Action != ActionRollback || dec.Step != 0 {
		t.Fatalf("third failure: %s to step %d, want rollback to 0", dec.Action, dec.Step)
	}
	// Back to 0 in one move, not step by step.
	last := d.moves[len(d.moves)-1]
	if last.Action != ActionRollback || last.From != 50 || last.To != 0 {
		t.Errorf("rollback move %+v, want 50 -> 0", last)
	}
	// It stays rolled back, even when the gates pass again.
	failing = false
	d.every(start.Add(4*time.Hour), start.Add(6*time.Hour), 10*time.Minute)
	p := d.progress["shop/db"]
	if p.Step != 0 || p.State != StateRolledBack || !strings.Contains(p.Blocked, "ferry resume") {
		t.Fatalf("after the rollback: step %d state %s blocked %q", p.Step, p.State, p.Blocked)
	}
	// Until someone resumes it.
	resumed, changed, err := ApplyRequest(m, d.progress, Request{Kind: RequestResume, Migration: "shop", Service: "shop/db", By: "dave", At: start.Add(6 * time.Hour)})
	if err != nil || len(changed) != 1 {
		t.Fatalf("resume: %v %v", changed, err)
	}
	d.progress = resumed
	d.every(start.Add(7*time.Hour), start.Add(7*time.Hour+5*time.Minute), time.Minute)
	if p := d.progress["shop/db"]; p.Step != 1 || p.Failures != 0 {
		t.Errorf("after resume and a tick: step %d failures %d, want 1 0", p.Step, p.Failures)
	}
	d.checkOneStep(m.Steps)
}

func TestInconclusiveNeverMoves(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	m.Window.Schedules = []string{"*/10 * * * *"}
	m.Soak = 0
	d := &daemon{t: t, m: m, progress: map[string]Progress{"shop/db": stepAt(2, 25, at(t, loc, "2026-11-23 09:00"))}}
	d.gates = func(ref string, now time.Time) []GateResult {
		return []GateResult{{Gate: "success-rate", Verdict: Inconclusive, Reason: "query: connection refused", At: now}}
	}
	d.every(at(t, loc, "2026-11-24 00:00"), at(t, loc, "2026-11-27 00:00"), time.Minute)
	p := d.progress["shop/db"]
	if p.Step != 2 || p.Failures != 0 || p.State != StateHolding || p.Override != nil {
		t.Errorf("after three days inconclusive: step %d failures %d state %s override %v", p.Step, p.Failures, p.State, p.Override)
	}
	if want := "gate success-rate inconclusive: query: connection refused"; p.Blocked != want {
		t.Errorf("blocked %q, want %q", p.Blocked, want)
	}
	if len(d.moves) != 0 {
		t.Errorf("moves while inconclusive:\n%s", d)
	}
}

func TestPauseResume(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	m.Soak = 0
	d := &daemon{t: t, m: m, progress: map[string]Progress{}}
	d.run(at(t, loc, "2026-11-23 09:00"))
	// Paused in Git: nothing moves at the next ticks.
	m.Paused = true
	d.run(at(t, loc, "2026-11-24 09:00"))
	d.run(at(t, loc, "2026-11-25 09:00"))
	if p := d.progress["shop/db"]; p.Step != 1 || p.State != StatePaused {
		t.Fatalf("paused in Git: step %d state %s", p.Step, p.State)
	}
	m.Paused = false
	d.run(at(t, loc, "2026-11-26 09:00"))
	if p := d.progress["shop/db"]; p.Step != 2 {
		t.Fatalf("resumed in Git: step %d, want 2", p.Step)
	}
	// Paused with ferry pause for the wave; resumed with ferry resume.
	now := at(t, loc, "2026-11-26 10:00")
	var err error
	d.progress, _, err = ApplyRequest(m, d.progress, Request{Kind: RequestPause, Migration: "shop", Wave: "backends", By: "erin", At: now})
	if err != nil {
		t.Fatal(err)
	}
	d.run(at(t, loc, "2026-11-27 09:00"))
	if p := d.progress["shop/db"]; p.Step != 2 || p.State != StatePaused || p.Blocked != "paused by erin at 2026-11-26T10:00:00+01:00" {
		t.Fatalf("paused with the CLI: step %d state %s blocked %q", p.Step, p.State, p.Blocked)
	}
	d.progress, _, err = ApplyRequest(m, d.progress, Request{Kind: RequestResume, Migration: "shop", By: "erin", At: now})
	if err != nil {
		t.Fatal(err)
	}
	d.run(at(t, loc, "2026-11-30 09:00"))
	if p := d.progress["shop/db"]; p.Step != 3 {
		t.Fatalf("resumed with the CLI: step %d, want 3", p.Step)
	}
}

func TestRemovedServiceRetiresThenForgets(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	d := &daemon{t: t, m: m, progress: map[string]Progress{"shop/old": stepAt(3, 50, at(t, loc, "2026-11-23 09:00"))}}
	now := at(t, loc, "2026-11-24 23:00")
	plan := d.run(now)
	if dec := plan.Decision("shop/old"); dec.Action != ActionRetire || dec.Step != 0 {
		t.Fatalf("first: %s to %d, want retire to 0", dec.Action, dec.Step)
	}
	if _, ok := plan.Steps()[ServiceID{Migration: "shop", Service: "shop/old"}]; !ok {
		t.Errorf("a retiring service is not rendered (at weight 0)")
	}
	plan = d.run(now.Add(time.Minute))
	if dec := plan.Decision("shop/old"); dec.Action != ActionForget {
		t.Fatalf("second: %s, want forget", dec.Action)
	}
	if _, ok := plan.Steps()[ServiceID{Migration: "shop", Service: "shop/old"}]; ok {
		t.Errorf("a forgotten service is still rendered")
	}
	if _, ok := d.progress["shop/old"]; ok {
		t.Errorf("a forgotten service is still in progress")
	}
}

func TestMaxConcurrentOneAtATime(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	m.MaxConcurrent = 1
	m.Waves[0].Services[1].DependsOn = nil
	m.Window.Schedules = []string{"0 * * * *"}
	m.Soak = 0
	d := &daemon{t: t, m: m, progress: map[string]Progress{}}
	d.every(at(t, loc, "2026-11-24 00:00"), at(t, loc, "2026-11-25 00:00"), 5*time.Minute)
	// db and cart never move at the same time.
	var firstCart, dbDone time.Time
	for _, mv := range d.moves {
		if mv.Service == "shop/cart" && firstCart.IsZero() {
			firstCart = mv.At
		}
		if mv.Service == "shop/db" && mv.To == 100 {
			dbDone = mv.At
		}
	}
	if firstCart.IsZero() || !firstCart.After(dbDone) {
		t.Errorf("cart started at %s, db reached 100 at %s:\n%s", firstCart, dbDone, d)
	}
	d.checkOneStep(m.Steps)
}

func TestApplyRequest(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	now := at(t, loc, "2026-11-24 10:00")
	base := map[string]Progress{"shop/db": stepAt(1, 5, now), "shop/web": completeAt(now)}
	tests := []struct {
		name    string
		req     Request
		changed []string
		err     error
	}{
		{"approve a wave", Request{Kind: RequestApprove, Wave: "backends", Step: 50}, []string{"shop/db", "shop/cart"}, nil},
		{"approve a service", Request{Kind: RequestApprove, Service: "shop/db"}, []string{"shop/db"}, nil},
		{"approve a step that is not one", Request{Kind: RequestApprove, Step: 42}, nil, errors.New("no step")},
		{"pause the migration leaves complete services", Request{Kind: RequestPause}, []string{"shop/db", "shop/cart"}, nil},
		{"rollback a service", Request{Kind: RequestRollback, Service: "shop/web"}, []string{"shop/web"}, nil},
		{"resume with nothing to resume", Request{Kind: RequestResume}, nil, nil},
		{"unknown wave", Request{Kind: RequestPause, Wave: "nope"}, nil, ErrUnknownScope},
		{"unknown service", Request{Kind: RequestPause, Service: "shop/nope"}, nil, ErrUnknownScope},
		{"service in another wave", Request{Kind: RequestPause, Wave: "frontends", Service: "shop/db"}, nil, ErrUnknownScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Migration, tt.req.By, tt.req.At = "shop", "frank", now
			before := cloneProgress(base)
			out, changed, err := ApplyRequest(m, base, tt.req)
			if tt.err != nil {
				if err == nil || errors.Is(tt.err, ErrUnknownScope) && !errors.Is(err, ErrUnknownScope) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.changed, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, base); diff != "" {
				t.Errorf("ApplyRequest modified its input:\n%s", diff)
			}
			for _, ref := range changed {
				p := out[ref]
				switch tt.req.Kind {
				case RequestApprove:
					if n := len(p.Approvals); n != 1 || p.Approvals[0].Step != tt.req.Step || p.Approvals[0].By != "frank" {
						t.Errorf("%s approvals %+v", ref, p.Approvals)
					}
				case RequestPause, RequestRollback:
					if p.Override == nil || string(p.Override.Action) != string(tt.req.Kind) || p.Override.By != "frank" {
						t.Errorf("%s override %+v", ref, p.Override)
					}
				}
			}
		})
	}
}

func TestProject(t *testing.T) {
	loc := berlin(t)
	m := shop(loc)
	m.Gates = append(m.Gates, Gate{Name: "sign-off", Kind: GateApproval, Steps: []int{100}})
	m.Waves[1].Paused = true
	now := at(t, loc, "2026-11-23 08:00") // a Monday
	progress := map[string]Progress{"shop/db": stepAt(2, 25, at(t, loc, "2026-11-20 09:00"))}
	proj := Project(now, m, progress, 30*24*time.Hour)
	type row struct {
		Service  string
		Moves    []string
		Complete string
		Blocked  string
	}
	var got []row
	for _, p := range proj {
		r := row{Service: p.Service, Blocked: p.Blocked}
		for _, mv := range p.Moves {
			s := mv.At.Format("Mon 01-02 15:04") + " " + Step{Weight: mv.Weight}.String()
			if mv.Approval {
				s += " (needs approval)"
			}
			r.Moves = append(r.Moves, s)
		}
		if !p.Complete.IsZero() {
			r.Complete = p.Complete.Format("Mon 01-02 15:04")
		}
		got = append(got, r)
	}
	want := []row{
		{Service: "shop/db", Moves: []string{"Mon 11-23 09:00 50", "Tue 11-24 09:00 100 (needs approval)"}, Complete: "Tue 11-24 10:00"},
		{Service: "shop/cart", Moves: []string{"Wed 11-25 09:00 5", "Thu 11-26 09:00 25", "Fri 11-27 09:00 50", "Mon 11-30 09:00 100 (needs approval)"}, Complete: "Mon 11-30 10:00"},
		{Service: "shop/web", Blocked: `paused in Git (wave "frontends")`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("projection (-want +got):\n%s", diff)
	}
}

func TestProjectNoWindowNoSoak(t *testing.T) {
	m := shop(time.UTC)
	m.Window = Window{}
	m.Soak = 0
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, p := range Project(now, m, nil, time.Hour) {
		if !p.Complete.Equal(now) || len(p.Moves) != 4 {
			t.Errorf("%s: %d moves, complete %s; want 4 at once", p.Service, len(p.Moves), p.Complete)
		}
	}
}
