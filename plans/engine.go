package plans

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The engine decides, for every service of one migration, where it goes
// next. It is a pure function of the plan, the recorded progress, the time
// and what the caller observed (gate results, readiness of backends): it
// runs no gate, reads no clock and writes nothing. A daemon tick is
//
//	plan := plans.Decide(now, m, progress, obs)        // 1: what is due
//	obs.Gates = run(plan.Decisions[i].Gates)           //    evaluate them
//	plan = plans.Decide(now, m, progress, obs)         // 2: decide
//	save(plan.Progress())                              //    write-ahead intent
//	apply(render(plan.Steps()))                        //    move traffic
//	for moved: progress[s] = plans.Complete(p, now)    //    intent done
//	save(progress)
//
// A crash between the two saves leaves Progress.Pending set; the next
// Decide drives the same target again, never a second step.

// Action is what a decision asks the caller to do with a service.
type Action string

// Actions.
const (
	// ActionNone leaves the service where it is.
	ActionNone Action = "none"
	// ActionPromote moves the service one step up; Progress.Pending holds
	// the intent until Complete.
	ActionPromote Action = "promote"
	// ActionHold leaves the service where it is because something is
	// wrong: a gate failed or was inconclusive, a backend is not ready,
	// an approval is missing, or failures froze it.
	ActionHold Action = "hold"
	// ActionRollback sends the service back to step 0 on every cluster at
	// once.
	ActionRollback Action = "rollback"
	// ActionRetire sends a service removed from the plan to weight 0,
	// before anything of it is unexported.
	ActionRetire Action = "retire"
	// ActionForget removes a retired service: its exports and splits are
	// pruned and its progress deleted.
	ActionForget Action = "forget"
	// ActionComplete marks a service soaked at its last step as complete.
	ActionComplete Action = "complete"
)

// Observations is what the caller saw that the engine cannot know.
type Observations struct {
	// Gates holds, by service ref, the latest results of the gates the
	// previous decision listed in Decision.Gates (prometheus and webhook;
	// the engine checks soak and approval itself). A result whose At is
	// not after the last one recorded was counted already.
	Gates map[string][]GateResult
	// Readiness says, by service ref, whether the service's backend on the
	// migration's `to` cluster exists and has ready endpoints. A service
	// without an answer is not promoted.
	Readiness map[string]Readiness
	// FromReadiness says the same of the `from` cluster, which receives
	// traffic back on a rollback. A service without an answer is taken as
	// ready there: it is the incumbent.
	FromReadiness map[string]Readiness
}

// Readiness is whether a backend may receive traffic, and why not.
type Readiness struct {
	Ready  bool
	Reason string
	// Unknown says the cluster could not be asked (its API server is
	// unreachable). A move in flight is then driven on rather than dropped:
	// a control-plane outage must not move traffic by itself, as an
	// inconclusive gate never does. A new move still waits.
	Unknown bool
}

// Plan is the engine's answer for one migration at one time.
type Plan struct {
	Migration string
	At        time.Time
	// Decisions holds one decision per service of the migration in wave
	// order, then one per service in progress but gone from the plan,
	// sorted by ref.
	Decisions []Decision
}

// Decision is what happens to one service.
type Decision struct {
	// Service is "namespace/name"; Wave is empty for a service that is no
	// longer in the plan.
	Service string
	Wave    string
	Action  Action
	// Step is the step index to render the service at now: the target of
	// a promotion or rollback, otherwise where it is.
	Step   int
	Weight int
	// Progress is the service's new progress, to be saved before anything
	// is applied. After ActionForget it is to be deleted.
	Progress Progress
	// Blocked says in words why the service does not move, as the first of
	// Reasons; empty when it moves or is done.
	Blocked string
	// Reasons lists everything that holds the service, most telling first.
	Reasons []string
	// Gates are the prometheus and webhook gates the caller should
	// evaluate and pass back in Observations.Gates: those guarding the
	// service's next step, or its completion at the last step.
	Gates []Gate
	// Due is set when only the results of Gates stand between the service
	// and its next move, so a caller evaluates confirmation webhooks only
	// when they matter.
	Due bool
	// NotBefore is, when only time holds the service (soak, window), the
	// earliest time it can move.
	NotBefore time.Time
	// Round holds the gate results this decision counted for the first
	// time, for the history.
	Round []GateResult
	// Remapped is set when the plan's steps were edited and the service's
	// recorded weight was mapped to a new step.
	Remapped bool
}

// Steps returns the step index each service is to be rendered at, for the
// renderer: every service of the plan, and retired ones at step 0.
func (p Plan) Steps() Steps {
	out := make(Steps, len(p.Decisions))
	for _, d := range p.Decisions {
		if d.Action == ActionForget {
			continue
		}
		out[ServiceID{Migration: p.Migration, Service: d.Service}] = d.Step
	}
	return out
}

// Progress returns the progress to save, by service ref, without the
// services to forget.
func (p Plan) Progress() map[string]Progress {
	out := make(map[string]Progress, len(p.Decisions))
	for _, d := range p.Decisions {
		if d.Action != ActionForget {
			out[d.Service] = d.Progress
		}
	}
	return out
}

// Decision returns the decision for the service ref, or nil.
func (p Plan) Decision(ref string) *Decision {
	for i := range p.Decisions {
		if p.Decisions[i].Service == ref {
			return &p.Decisions[i]
		}
	}
	return nil
}

// Moves reports whether any decision changes where traffic goes.
func (p Plan) Moves() bool {
	for _, d := range p.Decisions {
		switch d.Action {
		case ActionPromote, ActionRollback, ActionRetire:
			return true
		}
		if d.Remapped {
			return true
		}
	}
	return false
}

// Complete records that the move a decision asked for was applied at now:
// the service is at its pending step, its soak clock starts, and the
// intent is cleared. A progress without a move in flight is returned as
// it is.
func Complete(p Progress, now time.Time) Progress {
	if p.Pending == NoPending {
		return p
	}
	p.Step, p.Weight = p.Pending, p.PendingWeight
	p.Pending, p.PendingWeight = NoPending, 0
	p.Since = now
	p.Blocked = ""
	if p.State == StateRollingBack {
		p.State = StateRolledBack
	} else {
		p.State = StateProgressing
	}
	return p
}

// DefaultFailureThreshold is the number of consecutive failed gate rounds
// that triggers the failure policy when the plan does not say.
const DefaultFailureThreshold = 1

// Decide decides the next move of every service of m at now, from the
// recorded progress (by service ref; absent services have not started) and
// the caller's observations. It does not modify progress.
func Decide(now time.Time, m *Migration, progress map[string]Progress, obs Observations) Plan {
	e := &engine{
		now:      now,
		m:        m,
		progress: progress,
		obs:      obs,
		win:      compileWindow(m.Window),
		inFlight: map[string]int{},
	}
	return e.decide()
}

type engine struct {
	now      time.Time
	m        *Migration
	progress map[string]Progress
	obs      Observations
	win      *window
	// inFlight counts the services of each wave that have left step 0 and
	// are not complete, including those started by this decision.
	inFlight map[string]int
	// complete is the state before this decision; a service that completes
	// now lets its dependents start at the next tick.
	complete map[string]bool
}

func (e *engine) decide() Plan {
	plan := Plan{Migration: e.m.Name, At: e.now, Decisions: make([]Decision, 0, len(e.progress)+len(e.m.Waves)*8)}
	current := map[string]Progress{}
	remapped := map[string]bool{}
	e.complete = map[string]bool{}
	for _, w := range e.m.Waves {
		for _, s := range w.Services {
			ref := s.Ref()
			p, edited := e.normalize(ref)
			current[ref], remapped[ref] = p, edited
			if p.State == StateComplete {
				e.complete[ref] = true
			}
			if inFlight(p) {
				e.inFlight[w.Name]++
			}
		}
	}
	for wi, w := range e.m.Waves {
		for _, s := range w.Services {
			d := e.service(wi, w, s, current[s.Ref()])
			d.Remapped = remapped[s.Ref()]
			d.Progress.Blocked = d.Blocked
			plan.Decisions = append(plan.Decisions, d)
		}
	}
	var gone []string
	for ref := range e.progress {
		if _, ok := current[ref]; !ok {
			gone = append(gone, ref)
		}
	}
	sort.Strings(gone)
	for _, ref := range gone {
		d := e.retire(ref, e.progress[ref])
		d.Progress.Blocked = d.Blocked
		plan.Decisions = append(plan.Decisions, d)
	}
	return plan
}

// inFlight reports whether a service occupies a slot of its wave.
func inFlight(p Progress) bool {
	if p.State == StateComplete || p.State == StateRolledBack {
		return false
	}
	return p.Step > 0 || p.Pending > 0
}

// normalize returns the service's progress mapped onto the plan's current
// steps, and whether the steps were edited under it.
func (e *engine) normalize(ref string) (Progress, bool) {
	p, ok := e.progress[ref]
	if !ok {
		return NewProgress(e.now), false
	}
	p.Gates = slices.Clone(p.Gates)
	p.Approvals = slices.Clone(p.Approvals)
	if p.Override != nil {
		o := *p.Override
		p.Override = &o
	}
	if p.State == "" {
		p.State = StatePending
	}
	steps := e.m.Steps
	if p.Step >= 0 && p.Step < len(steps) && steps[p.Step].Weight == p.Weight &&
		(p.Pending == NoPending || p.Pending < len(steps) && steps[p.Pending].Weight == p.PendingWeight) {
		return p, false
	}
	// The steps were edited: go to the highest step not above the
	// recorded weight. An interrupted move is dropped; the service is
	// re-rendered at the mapped step, which is never more traffic than it
	// had.
	idx := e.m.StepIndexForWeight(p.Weight)
	if len(steps) == 0 {
		idx = 0
	}
	if p.Pending != NoPending && p.PendingWeight < p.Weight {
		// A rollback in flight stays one.
		idx = e.m.StepIndexForWeight(p.PendingWeight)
	}
	p.Step, p.Pending, p.PendingWeight = idx, NoPending, 0
	p.Weight = e.weight(idx)
	if p.State == StateComplete && idx != len(steps)-1 {
		p.State = StateProgressing
	}
	if p.State == StateRollingBack {
		p.State = StateRolledBack
		if idx > 0 {
			p.State = StateProgressing
		}
	}
	return p, true
}

func (e *engine) weight(step int) int {
	if step < 0 || step >= len(e.m.Steps) {
		return 0
	}
	return e.m.Steps[step].Weight
}

func (e *engine) last() int { return len(e.m.Steps) - 1 }

func (e *engine) decision(ref, wave string, p Progress) Decision {
	return Decision{Service: ref, Wave: wave, Action: ActionNone, Step: p.Step, Weight: p.Weight, Progress: p}
}

func (e *engine) service(wi int, w *Wave, s *Service, p Progress) Decision {
	ref := s.Ref()
	d := e.decision(ref, w.Name, p)

	// Traffic back first: a rollback from Git, an operator or a failure
	// policy wins over everything, pause included.
	if reason := e.rollbackReason(w, s, p); reason != "" {
		return e.rollback(d, reason)
	}
	if p.State == StateRolledBack || p.State == StateRollingBack && p.Pending == NoPending {
		// The rollback was lifted (Git flag removed, or ferry resume):
		// start over from step 0.
		p.State, p.Failures = StatePending, 0
		if p.Step > 0 {
			p.State = StateProgressing
		}
		d.Progress = p
	}

	// A move in flight is driven to its target again. A rollback always
	// is; a promotion as long as the backend still takes traffic or its
	// cluster cannot be asked, otherwise the intent is dropped and the
	// service re-rendered where it is.
	if p.Pending == 0 {
		d.Action, d.Step, d.Weight = ActionRollback, 0, p.PendingWeight
		return d
	}
	if p.Pending != NoPending {
		if r, ok := e.obs.Readiness[ref]; ok && (r.Ready || r.Unknown) {
			d.Action, d.Step, d.Weight = ActionPromote, p.Pending, p.PendingWeight
			if !r.Ready {
				d.Blocked, d.Reasons = "move held in flight: "+r.Reason, []string{r.Reason}
			}
			return d
		}
		p.Pending, p.PendingWeight = NoPending, 0
		d.Progress = p
	}

	// A complete service stays complete through a pause.
	if p.State == StateComplete {
		return d
	}
	if reason := e.pauseReason(w, p); reason != "" {
		d.Progress.State = StatePaused
		return blocked(d, ActionNone, reason)
	}
	if p.State == StatePaused {
		d.Progress.State = waiting(p)
	}
	if o := p.Override; o != nil && o.Action == OverrideHold {
		d.Progress.State = StateHolding
		return blocked(d, ActionHold, e.overrideReason(o))
	}
	if e.last() < 1 {
		return blocked(d, ActionNone, "the migration has no steps")
	}

	// Wave order and dependencies.
	if wi > 0 {
		prev := e.m.Waves[wi-1]
		for _, o := range prev.Services {
			if !e.complete[o.Ref()] {
				d.Progress.State = waiting(d.Progress)
				return blocked(d, ActionNone, fmt.Sprintf("waiting for wave %q to complete", prev.Name))
			}
		}
	}
	for _, dep := range s.DependsOn {
		if e.m.Service(dep) == nil {
			d.Progress.State = waiting(d.Progress)
			return blocked(d, ActionNone, fmt.Sprintf("depends on %s, which is not in migration %s", dep, e.m.Name))
		}
		if !e.complete[dep] {
			d.Progress.State = waiting(d.Progress)
			return blocked(d, ActionNone, fmt.Sprintf("waiting for %s to complete", dep))
		}
	}
	if !inFlight(d.Progress) {
		if limit := e.maxConcurrent(w); limit > 0 && e.inFlight[w.Name] >= limit {
			d.Progress.State = waiting(d.Progress)
			return blocked(d, ActionNone, fmt.Sprintf("waiting for a free slot: %d of %d services of wave %q moving", e.inFlight[w.Name], limit, w.Name))
		}
	}

	// Gate results: count a new round, and apply the failure policy.
	target := p.Step + 1
	guardW := e.weight(min(target, e.last()))
	gates := e.gates(w, guardW)
	d.Gates = external(gates)
	d = e.count(d, d.Gates)
	if o := d.Progress.Override; o != nil {
		switch o.Action {
		case OverrideRollback:
			return e.rollback(d, e.overrideReason(o))
		case OverrideHold:
			d.Progress.State = StateHolding
			return blocked(d, ActionHold, e.overrideReason(o))
		}
	}

	if p.Step >= e.last() {
		return e.completion(d, gates)
	}
	return e.promotion(w, s, d, target, gates)
}

// waiting is the state of a service held by order, not by a problem.
func waiting(p Progress) State {
	if p.Step > 0 {
		return StateProgressing
	}
	return StatePending
}

func blocked(d Decision, a Action, reasons ...string) Decision {
	d.Action = a
	d.Reasons = reasons
	if len(reasons) > 0 {
		d.Blocked = reasons[0]
	}
	return d
}

func (e *engine) stamp(t time.Time) string { return t.In(e.win.loc).Format(time.RFC3339) }

func (e *engine) overrideReason(o *Override) string {
	switch o.Action {
	case OverrideRollback:
		if o.By == EngineActor {
			return fmt.Sprintf("rolled back: %s; run ferry resume to start again", o.Reason)
		}
		return fmt.Sprintf("rolled back by %s at %s; run ferry resume to start again", o.By, e.stamp(o.At))
	case OverrideHold:
		return fmt.Sprintf("held: %s; run ferry resume", o.Reason)
	default:
		return fmt.Sprintf("paused by %s at %s", o.By, e.stamp(o.At))
	}
}

// EngineActor is the Override.By of decisions the engine took itself.
const EngineActor = "ferry"

func (e *engine) rollbackReason(w *Wave, s *Service, p Progress) string {
	switch {
	case e.m.Rollback:
		return "rolled back in Git (migration)"
	case w.Rollback:
		return fmt.Sprintf("rolled back in Git (wave %q)", w.Name)
	case s.Rollback:
		return "rolled back in Git (service)"
	case p.Override != nil && p.Override.Action == OverrideRollback:
		return e.overrideReason(p.Override)
	}
	return ""
}

func (e *engine) pauseReason(w *Wave, p Progress) string {
	switch {
	case e.m.Paused:
		return "paused in Git (migration)"
	case w.Paused:
		return fmt.Sprintf("paused in Git (wave %q)", w.Name)
	case p.Override != nil && p.Override.Action == OverridePause:
		return e.overrideReason(p.Override)
	}
	return ""
}

// rollback sends the service to step 0 at once, whatever the window, once
// its `from` backend can take the traffic.
func (e *engine) rollback(d Decision, reason string) Decision {
	p := d.Progress
	ref := d.Service
	p.Approvals = nil // a new start needs new approvals
	d.Progress = p
	if p.Pending == 0 {
		d.Action, d.Step, d.Weight = ActionRollback, 0, e.weight(0)
		d.Blocked, d.Reasons = reason, []string{reason}
		return d
	}
	if p.Step == 0 && p.Pending == NoPending {
		d.Progress.State = StateRolledBack
		d.Progress.Failures = 0
		return blocked(d, ActionNone, reason)
	}
	if r, ok := e.obs.FromReadiness[ref]; ok && !r.Ready {
		d.Progress.Pending, d.Progress.PendingWeight = NoPending, 0
		d.Progress.State = StateRollingBack
		return blocked(d, ActionHold, fmt.Sprintf("rollback waits: backend on %s not ready: %s", e.m.From, r.Reason), reason)
	}
	p.Pending, p.PendingWeight = 0, e.weight(0)
	p.State = StateRollingBack
	p.Failures = 0
	d.Progress = p
	d.Action, d.Step, d.Weight = ActionRollback, 0, p.PendingWeight
	d.Blocked, d.Reasons = reason, []string{reason}
	return d
}

// retire handles a service that is in progress but no longer in the plan:
// traffic to 0 first, then forget it.
func (e *engine) retire(ref string, p Progress) Decision {
	d := Decision{Service: ref, Step: 0, Weight: 0, Progress: p}
	const reason = "removed from the plan"
	if p.Pending == 0 || p.Step > 0 || p.Weight > 0 {
		if p.Pending != 0 {
			p.Pending, p.PendingWeight = 0, 0
			p.State = StateRollingBack
		}
		d.Progress = p
		return blocked(d, ActionRetire, reason)
	}
	return blocked(d, ActionForget, reason)
}

func (e *engine) maxConcurrent(w *Wave) int {
	if w.MaxConcurrent > 0 {
		return w.MaxConcurrent
	}
	return e.m.MaxConcurrent
}

// gates returns the gates of the migration and the wave that guard a move
// to weight w.
func (e *engine) gates(w *Wave, weight int) []Gate {
	var out []Gate
	for _, g := range slices.Concat(e.m.Gates, w.Gates) {
		if g.AppliesTo(weight) {
			out = append(out, g)
		}
	}
	return out
}

// external returns the gates the caller evaluates.
func external(gs []Gate) []Gate {
	var out []Gate
	for _, g := range gs {
		if g.Kind == GatePrometheus || g.Kind == GateWebhook {
			out = append(out, g)
		}
	}
	return out
}

// count records a new round of gate results: any failure counts one more
// consecutive failure, a full pass resets the count, and inconclusive
// results change nothing. Failures only count while traffic flows to the
// service; before its first step a failing gate merely holds it.
func (e *engine) count(d Decision, gates []Gate) Decision {
	p := d.Progress
	results := current(e.obs.Gates[d.Service], gates, e.now)
	var lastAt time.Time
	for _, r := range p.Gates {
		if r.At.After(lastAt) {
			lastAt = r.At
		}
	}
	var round []GateResult
	for _, r := range results {
		if r.At.After(lastAt) {
			round = append(round, r)
		}
	}
	if len(round) == 0 {
		return d
	}
	// Keep the latest result of each gate.
	for _, r := range round {
		i := slices.IndexFunc(p.Gates, func(o GateResult) bool { return o.Gate == r.Gate })
		if i < 0 {
			p.Gates = append(p.Gates, r)
		} else {
			p.Gates[i] = r
		}
	}
	d.Round = round
	if p.Step > 0 || p.Pending > 0 {
		var failed *GateResult
		for i, r := range round {
			if r.Verdict == Fail {
				failed = &round[i]
				break
			}
		}
		switch {
		case failed != nil:
			p.Failures++
			threshold := e.m.FailureThreshold
			if threshold <= 0 {
				threshold = DefaultFailureThreshold
			}
			if p.Failures >= threshold {
				action := OverrideRollback
				if e.m.OnFailure == FailHold {
					action = OverrideHold
				}
				p.Override = &Override{
					Action: action,
					By:     EngineActor,
					At:     e.now,
					Reason: fmt.Sprintf("%s (%d consecutive failures)", gateReason(*failed), p.Failures),
				}
			}
		case passed(round, gates):
			p.Failures = 0
		}
	}
	d.Progress = p
	return d
}

// current returns, for each gate, its result among rs (the latest if there
// are several), stamping results without a time with now.
func current(rs []GateResult, gates []Gate, now time.Time) []GateResult {
	var out []GateResult
	for _, g := range gates {
		var best *GateResult
		for i := range rs {
			if rs[i].Gate == g.Name && (best == nil || rs[i].At.After(best.At)) {
				best = &rs[i]
			}
		}
		if best != nil {
			r := *best
			if r.At.IsZero() {
				r.At = now
			}
			out = append(out, r)
		}
	}
	return out
}

// passed reports whether every gate has a passing result in rs.
func passed(rs []GateResult, gates []Gate) bool {
	for _, g := range gates {
		i := slices.IndexFunc(rs, func(r GateResult) bool { return r.Gate == g.Name })
		if i < 0 || rs[i].Verdict != Pass {
			return false
		}
	}
	return true
}

// gateReason words a failed or inconclusive result.
func gateReason(r GateResult) string {
	what := "failed"
	if r.Verdict == Inconclusive {
		what = "inconclusive"
	}
	// Gates word their reasons with their name first, for a reader of the
	// result alone; here the name is said already.
	reason := strings.TrimPrefix(strings.TrimPrefix(r.Reason, r.Gate+": "), r.Gate+" ")
	if reason == "" {
		return fmt.Sprintf("gate %s %s", r.Gate, what)
	}
	return fmt.Sprintf("gate %s %s: %s", r.Gate, what, reason)
}

// gateReasons returns why the gates do not all pass now, from the results
// evaluated at the current step, and whether any of them answered fail or
// inconclusive (rather than not being evaluated yet).
func (e *engine) gateReasons(d Decision, gates []Gate) (reasons []string, bad bool) {
	results := current(e.obs.Gates[d.Service], gates, e.now)
	for _, g := range gates {
		i := slices.IndexFunc(results, func(r GateResult) bool { return r.Gate == g.Name })
		switch {
		case i < 0:
			reasons = append(reasons, fmt.Sprintf("gate %s not evaluated", g.Name))
		case results[i].At.Before(d.Progress.Since):
			reasons = append(reasons, fmt.Sprintf("gate %s not evaluated since %s", g.Name, e.stamp(d.Progress.Since)))
		case results[i].Verdict != Pass:
			reasons = append(reasons, gateReason(results[i]))
			bad = true
		}
	}
	return reasons, bad
}

// SoakLeft returns how long a service at progress p must still stay at its
// step before a move to weight toWeight: the migration's soak (from the
// first step on) and every soak gate guarding that weight.
func SoakLeft(now time.Time, m *Migration, w *Wave, p Progress, toWeight int) time.Duration {
	need := time.Duration(0)
	if p.Step > 0 {
		need = m.Soak
	}
	gates := m.Gates
	if w != nil {
		gates = slices.Concat(m.Gates, w.Gates)
	}
	for _, g := range gates {
		if g.Kind == GateSoak && g.AppliesTo(toWeight) && g.Soak > need {
			need = g.Soak
		}
	}
	left := p.Since.Add(need).Sub(now)
	if left < 0 {
		return 0
	}
	return left
}

// ApprovedBy returns who approved moving service s of wave w to weight
// toWeight, in Git (m.Approvals) or with `ferry approve` (p.Approvals).
func ApprovedBy(m *Migration, w *Wave, s *Service, p Progress, toWeight int) (string, bool) {
	wave := ""
	if w != nil {
		wave = w.Name
	}
	for _, a := range m.Approvals {
		if a.Approves(wave, s.Ref(), toWeight) || a.Service == s.Name && a.Approves(wave, s.Name, toWeight) {
			return a.By, true
		}
	}
	for _, a := range p.Approvals {
		if a.Step == 0 || a.Step == toWeight {
			return a.By, true
		}
	}
	return "", false
}

func needsApproval(gates []Gate) bool {
	return slices.ContainsFunc(gates, func(g Gate) bool { return g.Kind == GateApproval })
}

// completion marks a service at its last step complete once it soaked and
// its gates pass.
func (e *engine) completion(d Decision, gates []Gate) Decision {
	w := e.m.Wave(d.Wave)
	if left := SoakLeft(e.now, e.m, w, d.Progress, d.Weight); left > 0 {
		d.Progress.State = StateProgressing
		d.NotBefore = e.now.Add(left)
		return blocked(d, ActionNone, fmt.Sprintf("soaking: %s left", left.Round(time.Second)))
	}
	if reasons, bad := e.gateReasons(d, d.Gates); len(reasons) > 0 {
		d.Due = true
		if !bad {
			d.Progress.State = StateProgressing
			return blocked(d, ActionNone, reasons...)
		}
		d.Progress.State = StateHolding
		return blocked(d, ActionHold, reasons...)
	}
	d.Progress.State = StateComplete
	d.Action = ActionComplete
	return d
}

// promotion moves the service one step when nothing holds it.
func (e *engine) promotion(w *Wave, s *Service, d Decision, target int, gates []Gate) Decision {
	p := d.Progress
	toWeight := e.weight(target)
	var timeReasons, otherReasons []string
	notBefore := e.now
	// At most one step per tick: a service that moved at Since needs a
	// tick after that. One still at step 0 has not moved; Since is when it
	// was first seen or rolled back, and any tick of the grace will do.
	var moved time.Time
	if p.Step > 0 {
		moved = p.Since
	}
	if left := SoakLeft(e.now, e.m, w, p, toWeight); left > 0 {
		timeReasons = append(timeReasons, fmt.Sprintf("soaking: %s left", left.Round(time.Second)))
		notBefore = e.now.Add(left)
	}
	if e.win.err != nil {
		otherReasons = append(otherReasons, e.win.err.Error())
	} else if deny, until, ok := e.win.denied(e.now); ok {
		r := "in deny window"
		if deny.Reason != "" {
			r += fmt.Sprintf(" %q", deny.Reason)
		}
		if !until.IsZero() {
			r += " until " + e.stamp(until)
		}
		timeReasons = append(timeReasons, r)
	} else if !e.win.open(notBefore, moved) {
		// The first tick once the service has soaked.
		next := e.win.nextOpen(notBefore)
		if next.IsZero() {
			otherReasons = append(otherReasons, "waiting for window: no tick ahead")
		} else {
			timeReasons = append(timeReasons, "waiting for window: next tick "+e.stamp(next))
		}
	}
	if len(timeReasons) > 0 {
		d.NotBefore = e.win.earliest(notBefore, moved)
	}
	gateReasons, gatesBad := e.gateReasons(d, d.Gates)
	if needsApproval(gates) {
		if _, ok := ApprovedBy(e.m, w, s, p, toWeight); !ok {
			otherReasons = append(otherReasons, fmt.Sprintf("waiting for approval of step %d", toWeight))
		}
	}
	if r, ok := e.obs.Readiness[d.Service]; !ok {
		otherReasons = append(otherReasons, fmt.Sprintf("readiness of the backend on %s unknown", e.m.To))
	} else if !r.Ready {
		otherReasons = append(otherReasons, fmt.Sprintf("backend on %s not ready: %s", e.m.To, r.Reason))
	}
	d.Due = len(timeReasons) == 0 && len(otherReasons) == 0 && len(gateReasons) > 0
	if len(otherReasons) > 0 || len(gateReasons) > 0 {
		d.NotBefore = time.Time{}
	}
	if reasons := slices.Concat(timeReasons, gateReasons, otherReasons); len(reasons) > 0 {
		action := ActionNone
		state := waiting(p)
		// Holding means something is wrong; a gate not evaluated yet, while
		// the service waits anyway, is not.
		if gatesBad || len(otherReasons) > 0 {
			action, state = ActionHold, StateHolding
		}
		d.Progress.State = state
		return blocked(d, action, reasons...)
	}
	if !inFlight(p) {
		e.inFlight[w.Name]++
	}
	p.Pending, p.PendingWeight = target, toWeight
	p.State = StateProgressing
	d.Progress = p
	d.Action, d.Step, d.Weight = ActionPromote, target, toWeight
	return d
}
