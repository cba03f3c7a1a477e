package state_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

// The tests in this file run against every store.

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

func progressAt(step, weight int, since time.Time) plans.Progress {
	p := plans.NewProgress(since)
	p.Step, p.Weight, p.State = step, weight, plans.StateProgressing
	return p
}

func testRoundTrip(t *testing.T, st state.Store) {
	ctx := t.Context()
	s, err := st.Load(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 0 || len(s.Services) != 0 {
		t.Fatalf("a new migration: version %d, %d services", s.Version, len(s.Services))
	}
	db := progressAt(2, 25, t0)
	db.Pending, db.PendingWeight = 3, 50
	db.Failures = 1
	db.Gates = []plans.GateResult{{Gate: "success-rate", Verdict: plans.Fail, Value: 0.981, Reason: "success-rate 0.981 < 0.995", At: t0}}
	db.Approvals = []plans.CLIApproval{{Step: 50, By: "alice", At: t0}}
	cart := plans.NewProgress(t0)
	cart.Override = &plans.Override{Action: plans.OverridePause, By: "bob", At: t0, Reason: "incident 42"}
	cart.Blocked = "paused by bob"
	services := map[string]plans.Progress{"shop/db": db, "shop/cart": cart}
	events := []state.Event{
		{At: t0, Wave: "backends", Service: "shop/db", Kind: state.EventGates, Gates: db.Gates, Reason: "fail"},
		{At: t0, Wave: "backends", Service: "shop/db", Kind: state.EventPromote, From: 25, To: 50, Commit: "abc", Actor: "ferry"},
		{At: t0, Wave: "backends", Service: "shop/cart", Kind: state.EventPause, Reason: "paused by bob"},
	}
	v, err := st.Save(ctx, state.Change{Migration: "shop", Version: 0, Services: services, Commit: "abc", At: t0, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	if v != 1 {
		t.Errorf("version after the first save: %d", v)
	}
	if ms, err := st.Migrations(ctx); err != nil || !slices.Equal(ms, []string{"shop"}) {
		t.Errorf("Migrations = %q, %v; want [shop]", ms, err)
	}
	got, err := st.Load(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := state.Snapshot{Migration: "shop", Version: 1, Services: services, Commit: "abc", SavedAt: t0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loaded (-saved +loaded):\n%s", diff)
	}
	// An event-only change leaves the progress and its version alone.
	if v, err := st.Save(ctx, state.Change{Migration: "shop", Events: []state.Event{{At: t0, Kind: state.EventWait, Reason: "waiting for window"}}}); err != nil || v != 1 {
		t.Errorf("event-only save: version %d, %v", v, err)
	}
	h, err := st.History(ctx, "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	var wantH []state.Event
	for i, e := range append(events, state.Event{At: t0, Kind: state.EventWait, Reason: "waiting for window"}) {
		e.Seq, e.Migration = uint64(i+1), "shop"
		wantH = append(wantH, e)
	}
	if diff := cmp.Diff(wantH, h); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	h, err = st.History(ctx, "shop", "shop/db")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{1, 2, 4}, seqs(h)); diff != "" {
		t.Errorf("history of shop/db, by seq (-want +got):\n%s", diff)
	}
	if h, err := st.History(ctx, "other", ""); err != nil || len(h) != 0 {
		t.Errorf("history of an unknown migration: %v, %v", h, err)
	}
}

func seqs(h []state.Event) []uint64 {
	var out []uint64
	for _, e := range h {
		out = append(out, e.Seq)
	}
	return out
}

func testConflict(t *testing.T, st state.Store) {
	ctx := t.Context()
	one := map[string]plans.Progress{"shop/db": progressAt(1, 5, t0)}
	if _, err := st.Save(ctx, state.Change{Migration: "shop", Services: one, At: t0}); err != nil {
		t.Fatal(err)
	}
	a, _ := st.Load(ctx, "shop")
	b, _ := st.Load(ctx, "shop")
	two := map[string]plans.Progress{"shop/db": progressAt(2, 25, t0)}
	if _, err := st.Save(ctx, state.Change{Migration: "shop", Version: a.Version, Services: two, At: t0,
		Events: []state.Event{{Kind: state.EventPromote, Service: "shop/db"}}}); err != nil {
		t.Fatal(err)
	}
	_, err := st.Save(ctx, state.Change{Migration: "shop", Version: b.Version, Services: one, At: t0,
		Events: []state.Event{{Kind: state.EventRollback, Service: "shop/db"}}})
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("a save from a stale load: %v, want ErrConflict", err)
	}
	got, _ := st.Load(ctx, "shop")
	if got.Version != 2 || got.Services["shop/db"].Step != 2 {
		t.Errorf("after the conflict: version %d step %d, want 2 2", got.Version, got.Services["shop/db"].Step)
	}
	h, _ := st.History(ctx, "shop", "")
	if len(h) != 1 || h[0].Kind != state.EventPromote {
		t.Errorf("the refused save left events: %+v", h)
	}
}

func testRequests(t *testing.T, st state.Store) {
	ctx := t.Context()
	if _, err := st.Submit(ctx, plans.Request{Kind: plans.RequestPause, Migration: "shop", At: t0}); err == nil {
		t.Error("a request from nobody was accepted")
	}
	if _, err := st.Submit(ctx, plans.Request{Kind: "explode", Migration: "shop", By: "x", At: t0}); err == nil {
		t.Error("an unknown request was accepted")
	}
	s, _ := st.Load(ctx, "shop")
	pause, err := st.Submit(ctx, plans.Request{Kind: plans.RequestPause, Migration: "shop", Wave: "backends", By: "carol", At: t0, Reason: "incident 42"})
	if err != nil {
		t.Fatal(err)
	}
	approve, err := st.Submit(ctx, plans.Request{Kind: plans.RequestApprove, Migration: "shop", Service: "shop/db", Step: 50, By: "dave", At: t0.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if pause.ID == "" || pause.ID == approve.ID {
		t.Fatalf("request IDs %q and %q", pause.ID, approve.ID)
	}
	pending, err := st.Pending(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]plans.Request{pause, approve}, pending); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	// The daemon loaded before the requests came: they are no conflict.
	v, err := st.Save(ctx, state.Change{Migration: "shop", Version: s.Version, Services: map[string]plans.Progress{}, At: t0, Done: []string{pause.ID}})
	if err != nil {
		t.Fatalf("a save after a submit: %v", err)
	}
	if v != s.Version+1 {
		t.Errorf("version %d after %d", v, s.Version)
	}
	pending, _ = st.Pending(ctx, "shop")
	if diff := cmp.Diff([]plans.Request{approve}, pending); diff != "" {
		t.Errorf("pending after applying the pause (-want +got):\n%s", diff)
	}
	h, _ := st.History(ctx, "shop", "")
	var got []string
	for _, e := range h {
		got = append(got, fmt.Sprintf("%s %s by %s (%s)", e.Kind, e.Reason, e.Actor, e.Request))
	}
	want := []string{
		fmt.Sprintf("request pause shop/backends: incident 42 by carol (%s)", pause.ID),
		fmt.Sprintf("request approve shop/shop/db step 50 by dave (%s)", approve.ID),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

// testConcurrentWriters runs, on every store at once, writers that each
// increment a counter in the progress n times (loading again on each
// conflict) and a CLI submitting requests; nothing may be lost or doubled.
func testConcurrentWriters(t *testing.T, stores []state.Store, n int) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	errs := make(chan error, len(stores)*2)
	for i, st := range stores {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range n {
				for {
					s, err := st.Load(ctx, "shop")
					if err != nil {
						errs <- err
						return
					}
					p := s.Services["shop/db"]
					p.Failures++
					// Decide for a while, so that writers interleave.
					time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
					_, err = st.Save(ctx, state.Change{Migration: "shop", Version: s.Version,
						Services: map[string]plans.Progress{"shop/db": p}, At: t0,
						Events: []state.Event{{Service: "shop/db", Kind: state.EventGates, Reason: fmt.Sprint(p.Failures)}}})
					if errors.Is(err, state.ErrConflict) {
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
		go func() {
			defer wg.Done()
			for j := range n {
				if _, err := st.Submit(ctx, plans.Request{Kind: plans.RequestApprove, Migration: "shop", By: fmt.Sprintf("cli-%d-%d", i, j), At: t0}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := len(stores) * n
	s, err := stores[0].Load(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != uint64(total) || s.Services["shop/db"].Failures != total {
		t.Errorf("after %d saves: version %d, counter %d", total, s.Version, s.Services["shop/db"].Failures)
	}
	pending, _ := stores[0].Pending(ctx, "shop")
	ids := map[string]bool{}
	for _, q := range pending {
		ids[q.ID] = true
	}
	if len(pending) != total || len(ids) != total {
		t.Errorf("%d requests pending with %d distinct IDs, want %d", len(pending), len(ids), total)
	}
	h, _ := stores[0].History(ctx, "shop", "")
	if len(h) != 2*total {
		t.Errorf("%d events, want %d", len(h), 2*total)
	}
	for i, e := range h {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	t.Logf("%d writers × %d saves: %d conflicts detected and retried", len(stores), n, conflicts)
}

// testWriteAheadResume saves a promotion's intent, "crashes" before it is
// applied, and reopens the store: the engine drives the same step again,
// with the soak clock untouched, and never a second one.
func testWriteAheadResume(t *testing.T, st state.Store, reopen func() state.Store) {
	ctx := t.Context()
	m := &plans.Migration{
		Name: "shop", From: "onprem", To: "eks",
		Steps:  []plans.Step{{Weight: 0}, {Weight: 5}, {Weight: 100}},
		Window: plans.Window{Schedules: []string{"0 9 * * *"}, Location: time.UTC},
		Waves:  []*plans.Wave{{Name: "all", Services: []*plans.Service{{Namespace: "shop", Name: "db", Wave: "all"}}}},
	}
	ready := plans.Observations{Readiness: map[string]plans.Readiness{"shop/db": {Ready: true}}}
	since := t0.Add(-24 * time.Hour)
	start := map[string]plans.Progress{"shop/db": progressAt(1, 5, since)}
	if _, err := st.Save(ctx, state.Change{Migration: "shop", Services: start, At: since}); err != nil {
		t.Fatal(err)
	}
	s, _ := st.Load(ctx, "shop")
	plan := plans.Decide(t0, m, s.Services, ready)
	if d := plan.Decision("shop/db"); d.Action != plans.ActionPromote || d.Step != 2 {
		t.Fatalf("decision: %s to %d", d.Action, d.Step)
	}
	if _, err := st.Save(ctx, state.Change{Migration: "shop", Version: s.Version, Services: plan.Progress(), At: t0,
		Events: state.Events(s.Services, plan, "abc")}); err != nil {
		t.Fatal(err)
	}
	// Crash: nothing applied, nothing completed. A new process starts.
	st = reopen()
	later := t0.Add(3 * time.Hour)
	s, err := st.Load(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	p := s.Services["shop/db"]
	if p.Pending != 2 || !p.Since.Equal(since) {
		t.Fatalf("reloaded: pending %d since %s", p.Pending, p.Since)
	}
	plan = plans.Decide(later, m, s.Services, ready)
	d := plan.Decision("shop/db")
	if d.Action != plans.ActionPromote || d.Step != 2 || !d.Progress.Since.Equal(since) {
		t.Fatalf("after the restart: %s to %d since %s; want the same promotion, soak clock untouched", d.Action, d.Step, d.Progress.Since)
	}
	if ev := state.Events(s.Services, plan, "abc"); len(ev) != 0 {
		t.Errorf("driving the same move again recorded %+v", ev)
	}
	done := plan.Progress()
	done["shop/db"] = plans.Complete(done["shop/db"], later)
	if _, err := st.Save(ctx, state.Change{Migration: "shop", Version: s.Version, Services: done, At: later}); err != nil {
		t.Fatal(err)
	}
	s, _ = st.Load(ctx, "shop")
	want := progressAt(2, 100, later)
	if diff := cmp.Diff(want, s.Services["shop/db"], cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after completing (-want +got):\n%s", diff)
	}
	h, _ := st.History(ctx, "shop", "shop/db")
	if len(h) != 1 || h[0].Kind != state.EventPromote || h[0].From != 5 || h[0].To != 100 {
		t.Errorf("history: %+v", h)
	}
}
