package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
	"github.com/ferry-dev/ferry/reconciler/metrics"
	"github.com/ferry-dev/ferry/reconciler/source"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/renderer"
)

// Source gives plan snapshots and remembers which were good.
type Source interface {
	Poll(ctx context.Context) (*source.Snapshot, bool, error)
	Accept(rev string) error
	Refuse(rev string, err error) *source.RefusedError
}

// Target receives the rendered result of a reconcile.
type Target interface {
	// Apply makes the target hold res. It returns an error when any part
	// failed; progress then does not count the step as done.
	Apply(ctx context.Context, res *renderer.Result) error
	// CheckReadiness reports whether readiness of backends is checked;
	// a directory target cannot check it.
	CheckReadiness() bool
}

// ReadinessChecker is a Target that can tell whether a Service has ready
// endpoints in a cluster.
type ReadinessChecker interface {
	Ready(ctx context.Context, cluster, namespace, service string) plans.Readiness
}

// Store is the durable progress the reconciler needs.
type Store interface {
	Load(ctx context.Context, migration string) (state.Snapshot, error)
	Save(ctx context.Context, c state.Change) (uint64, error)
	Pending(ctx context.Context, migration string) ([]plans.Request, error)
	Migrations(ctx context.Context) ([]string, error)
}

// PartialFailer is a Target that, after an Apply that failed, can tell
// whether it failed for a migration.
type PartialFailer interface {
	Failed(migration string) bool
}

// Preflighter is a Target that can check, before a migration's first
// step, that every cluster can take what ferry renders for it. It returns
// the failed checks in words.
type Preflighter interface {
	Preflight(ctx context.Context, repo *plans.Repository, res *renderer.Result) []string
}

// Config composes a reconciler.
type Config struct {
	Source Source
	Store  Store
	Target Target
	Gates  *gates.Evaluator
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Tweak, when set, adjusts a freshly loaded repository (the demo's
	// short timings); it runs before validation of the render.
	Tweak func(*plans.Repository)
	// OnPlans is called when a new commit's plans come into force.
	OnPlans func(*plans.Repository)
	// OnReconcile is called after every reconcile with the plans in force
	// and the decisions taken, for progress views.
	OnReconcile func(repo *plans.Repository, decisions map[string]plans.Plan)
	// OnApply is called after every apply to the target, also a failed
	// one, with its error (metrics of what was applied, conflicts, drift).
	OnApply func(err error)
	// OnEvents is called with the history events of every saved decision
	// (Kubernetes Events, notifications).
	OnEvents func(ctx context.Context, migration string, events []state.Event)
	// Metrics records what the loop does; nil records nothing.
	Metrics *metrics.Metrics
	// Drain is how long an in-flight reconcile may go on after the
	// context of Run ended, before it is abandoned.
	Drain time.Duration
	// Fence, when set, is asked right before anything is written to the
	// store or a target; false (this replica lost its lease) skips the
	// write.
	Fence func() bool
}

// ErrFenced is returned when a reconcile stopped because Fence said this
// replica may no longer write.
var ErrFenced = errors.New("not the leader any more: nothing written")

// Reconciler runs the loop.
type Reconciler struct {
	cfg      Config
	renderer *renderer.Renderer

	mu       sync.Mutex
	repo     *plans.Repository // last good
	revision string
	lastErr  error

	// Owned by the loop (Reconcile is not called concurrently); svcDefs
	// also grows while migrations decide, under defsMu.
	defs     map[string]*plans.Migration
	defsMu   sync.Mutex
	svcDefs  map[plans.ServiceID]*plans.Service
	clusters map[string]*plans.Cluster
	retired  map[string]bool
	recallMu sync.Mutex
	recalled map[string]bool // revisions read for removed definitions
	warned   map[string]bool
	pfMu     sync.Mutex // guards checked: migrations decide concurrently
	checked  map[string]preflightResult

	trigger chan struct{}
	alive   atomic.Int64 // unix nanos of the last finished reconcile
	wake    atomic.Int64 // unix nanos of the next time something may move
}

// preflightResult is a migration's last preflight, reused for a while.
type preflightResult struct {
	revision string
	at       time.Time
	failures []string
}

// preflightTTL is how long a preflight result stands before the checks
// run again.
const preflightTTL = time.Minute

// New returns a reconciler.
func New(cfg Config) *Reconciler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{
		cfg: cfg, renderer: renderer.New(),
		defs: map[string]*plans.Migration{}, svcDefs: map[plans.ServiceID]*plans.Service{},
		clusters: map[string]*plans.Cluster{}, retired: map[string]bool{}, warned: map[string]bool{}, recalled: map[string]bool{},
		checked: map[string]preflightResult{}, trigger: make(chan struct{}, 1),
	}
}

// Status is what the loop last did.
func (r *Reconciler) Status() (revision string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revision, r.lastErr
}

// Trigger asks Run for a reconcile now (a webhook said the plans moved).
// It never blocks: triggers that arrive while one is pending merge into
// it, so a burst of them makes one reconcile.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// LastReconcile returns when the last reconcile finished, for liveness.
func (r *Reconciler) LastReconcile() time.Time {
	n := r.alive.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Run reconciles every interval, and at once on Trigger, until ctx ends.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	// The work of a reconcile outlives ctx by Drain, so a shutdown lets
	// the in-flight apply finish rather than cut it in half.
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(r.cfg.Drain, abandon) })
	defer stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		start := time.Now()
		err := r.Reconcile(work)
		r.cfg.Metrics.Reconciled(time.Since(start), err)
		r.alive.Store(time.Now().UnixNano())
		if err != nil && !errors.Is(err, context.Canceled) {
			r.cfg.Logger.Error("reconcile", "error", err)
		}
		// Wake at the next window tick or gate round when it comes before
		// the next poll, so a promotion does not wait for the interval.
		early := time.NewTimer(interval)
		if w := r.wake.Load(); w != 0 {
			if d := time.Until(time.Unix(0, w)); d < interval {
				early.Reset(max(d, 50*time.Millisecond))
			}
		}
		select {
		case <-ctx.Done():
			early.Stop()
			return nil
		case <-t.C:
		case <-early.C:
		case <-r.trigger:
		}
		early.Stop()
	}
}

// nextWake returns the earliest time a decision may change by time alone:
// a service's NotBefore (soak, window tick) or, for a service whose gates
// run, the next analysis round.
func nextWake(now time.Time, repo *plans.Repository, decisions map[string]plans.Plan) time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for name, plan := range decisions {
		m := repo.Migration(name)
		for _, d := range plan.Decisions {
			earlier(d.NotBefore)
			if m != nil && d.Progress.Pending != plans.NoPending {
				// A move completes in this reconcile; its soak starts now.
				earlier(now.Add(max(m.Soak, time.Second)))
			}
			if m != nil && (len(d.Gates) > 0 || d.Due) {
				earlier(now.Add(m.AnalysisInterval))
			}
		}
	}
	return next
}

// fenced reports whether writes must stop.
func (r *Reconciler) fenced() bool { return r.cfg.Fence != nil && !r.cfg.Fence() }

// Reconcile polls the source once, then decides, renders, applies and
// persists every migration of the plans in force.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	r.poll(ctx)
	r.mu.Lock()
	repo, rev := r.repo, r.revision
	r.mu.Unlock()
	if repo == nil {
		return errors.New("no good plan commit yet")
	}
	now := r.cfg.Now()
	base := repo
	repo, gone, err := r.inForce(ctx, repo)
	if err != nil {
		return err
	}

	// Migrations decide concurrently, so that one whose gates are slow
	// (a Prometheus timing out) does not delay the others.
	results := make([]decided, len(repo.Migrations))
	var wg sync.WaitGroup
	for i, m := range repo.Migrations {
		wg.Go(func() { results[i] = r.decide(ctx, repo, base.Migration(m.Name), m, rev, now) })
	}
	wg.Wait()
	steps := plans.Steps{}
	decisions := map[string]plans.Plan{}
	before := map[string]state.Snapshot{}
	render := *repo
	render.Migrations = nil
	var errs []error
	for _, d := range results {
		if d.err != nil {
			errs = append(errs, d.err)
			continue
		}
		if d.render {
			render.Migrations = append(render.Migrations, d.m)
		}
		before[d.m.Name] = d.snap
		decisions[d.m.Name] = d.plan
		for id, idx := range d.plan.Steps() {
			steps[id] = idx
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Nothing is applied: a render without a migration would read as
		// its removal to a directory target.
		return err
	}

	// Decided before the moves below complete, while Pending still says
	// which services move now.
	if w := nextWake(now, repo, decisions); !w.IsZero() {
		r.wake.Store(w.UnixNano())
	} else {
		r.wake.Store(0)
	}
	res, err := r.renderer.Render(&render, steps)
	if err != nil {
		return fmt.Errorf("render %s: %w", rev, err)
	}
	if r.fenced() {
		return ErrFenced
	}
	err = r.cfg.Target.Apply(ctx, res)
	if r.cfg.OnApply != nil {
		r.cfg.OnApply(err)
	}
	// A target that can tell which migrations failed lets the others'
	// moves complete: one migration's conflict does not hold another.
	var failed func(string) bool
	if err != nil {
		pf, ok := r.cfg.Target.(PartialFailer)
		if !ok {
			return fmt.Errorf("apply %s: %w", rev, err)
		}
		failed = pf.Failed
	}
	// Every cluster holds the new steps of these migrations: their moves
	// are done.
	for _, m := range repo.Migrations {
		if failed != nil && failed(m.Name) {
			continue
		}
		snap := before[m.Name]
		changed := false
		for ref, p := range snap.Services {
			if p.Pending != plans.NoPending {
				snap.Services[ref] = plans.Complete(p, now)
				changed = true
			}
		}
		if !changed {
			continue
		}
		if _, err := r.cfg.Store.Save(ctx, state.Change{Migration: m.Name, Version: snap.Version, Services: snap.Services, Commit: rev, At: now}); err != nil {
			return fmt.Errorf("migration %s: save completion: %w", m.Name, err)
		}
		plan := decisions[m.Name]
		for i := range plan.Decisions {
			d := &plan.Decisions[i]
			if p, ok := snap.Services[d.Service]; ok {
				d.Progress = p
			}
		}
	}
	for _, m := range repo.Migrations {
		r.cfg.Metrics.Progress(m, decisions[m.Name])
	}
	if err != nil {
		// Some migrations failed: no retirement, and the error is reported.
		return fmt.Errorf("apply %s: %w", rev, err)
	}
	r.retire(ctx, gone)
	if r.cfg.OnReconcile != nil {
		r.cfg.OnReconcile(repo, decisions)
	}
	return nil
}

// decided is one migration's decision.
type decided struct {
	m      *plans.Migration // with removed services carried, if any
	snap   state.Snapshot   // as saved with the intent
	plan   plans.Plan
	render bool // false while preflight fails
	err    error
}

// decide loads a migration's progress, applies operator requests, observes
// readiness, preflight and gates, decides, and saves the intent.
// defined is m as the plans in force define it, nil for a migration they
// no longer hold.
func (r *Reconciler) decide(ctx context.Context, repo *plans.Repository, defined, m *plans.Migration, rev string, now time.Time) decided {
	fail := func(what string, err error) decided {
		return decided{err: fmt.Errorf("migration %s: %s: %w", m.Name, what, err)}
	}
	snap, err := r.cfg.Store.Load(ctx, m.Name)
	if err != nil {
		return fail("load progress", err)
	}
	progress := snap.Services
	if progress == nil {
		progress = map[string]plans.Progress{}
	}
	m, err = r.withSelected(ctx, m)
	if err != nil {
		return fail("services", err)
	}
	m = r.withRemoved(m, progress)
	// Operator requests (ferry approve/pause/resume/rollback).
	reqs, err := r.cfg.Store.Pending(ctx, m.Name)
	if err != nil {
		return fail("pending requests", err)
	}
	var done []string
	for _, q := range reqs {
		if np, _, err := plans.ApplyRequest(m, progress, q); err == nil {
			progress = np
		} else {
			r.cfg.Logger.Warn("request refused", "migration", m.Name, "request", q.ID, "error", err)
		}
		done = append(done, q.ID)
	}
	obs := plans.Observations{Readiness: map[string]plans.Readiness{}, FromReadiness: map[string]plans.Readiness{}}
	rc, canCheck := r.cfg.Target.(ReadinessChecker)
	canCheck = canCheck && r.cfg.Target.CheckReadiness()
	for _, s := range m.Services() {
		if !canCheck {
			obs.Readiness[s.Ref()] = plans.Readiness{Ready: true, Reason: "not checked: directory target"}
			continue
		}
		// Traffic only goes to a backend that exists and has ready
		// endpoints (DESIGN.md invariant 1), on either side.
		obs.Readiness[s.Ref()] = rc.Ready(ctx, m.To, s.Namespace, s.Name)
		obs.FromReadiness[s.Ref()] = rc.Ready(ctx, m.From, s.Namespace, s.Name)
	}
	// A migration that has not started must pass preflight on every
	// cluster first; until then nothing of it is applied and its services
	// hold with the failures as the reason.
	failures := r.preflight(ctx, repo, m, progress, rev, now)
	if len(failures) > 0 {
		why := "preflight failed: " + strings.Join(failures, "; ")
		for _, s := range m.Services() {
			obs.Readiness[s.Ref()] = plans.Readiness{Ready: false, Reason: why}
		}
	}
	plan := plans.Decide(now, m, progress, obs)
	if r.cfg.Gates != nil {
		obs.Gates = r.cfg.Gates.Observe(ctx, m, plan, rev, now)
		plan = plans.Decide(now, m, progress, obs)
	}
	if r.fenced() {
		return decided{err: ErrFenced}
	}
	// Write-ahead: the intent is durable before traffic moves.
	events := state.Events(progress, plan, rev)
	next := plan.Progress()
	for ref, p := range next {
		if defined != nil && defined.Service(ref) != nil {
			p.Defined = rev
			next[ref] = p
		}
	}
	v, err := r.cfg.Store.Save(ctx, state.Change{
		Migration: m.Name, Version: snap.Version, Services: next,
		Commit: rev, At: now, Events: events, Done: done,
	})
	if err != nil {
		return fail("save intent", err)
	}
	if r.cfg.OnEvents != nil && len(events) > 0 {
		r.cfg.OnEvents(ctx, m.Name, events)
	}
	r.cfg.Metrics.Gates(m, plan)
	snap.Version = v
	snap.Services = next
	return decided{m: m, snap: snap, plan: plan, render: len(failures) == 0}
}

// started reports whether any service of a migration has moved or is
// moving.
func started(progress map[string]plans.Progress) bool {
	for _, p := range progress {
		if carrying(p) || p.Pending != plans.NoPending {
			return true
		}
	}
	return false
}

// preflight returns the failed preflight checks of m when m has not
// started and the target can run them.
func (r *Reconciler) preflight(ctx context.Context, repo *plans.Repository, m *plans.Migration, progress map[string]plans.Progress, rev string, now time.Time) []string {
	pf, ok := r.cfg.Target.(Preflighter)
	if !ok || started(progress) {
		return nil
	}
	r.pfMu.Lock()
	c, ok := r.checked[m.Name]
	r.pfMu.Unlock()
	if ok && c.revision == rev && now.Sub(c.at) < preflightTTL {
		return c.failures
	}
	one := *repo
	one.Migrations = []*plans.Migration{m}
	var failures []string
	res, err := r.renderer.Render(&one, plans.Steps{})
	if err != nil {
		failures = []string{err.Error()}
	} else {
		failures = pf.Preflight(ctx, &one, res)
	}
	if len(failures) > 0 {
		r.cfg.Logger.Warn("preflight failed; the migration does not start", "migration", m.Name, "failures", failures)
	}
	r.pfMu.Lock()
	r.checked[m.Name] = preflightResult{revision: rev, at: now, failures: failures}
	r.pfMu.Unlock()
	return failures
}

// poll takes a new commit when there is one. A commit that fails to load
// or render is refused and the last good plans stay in force.
func (r *Reconciler) poll(ctx context.Context) {
	snap, changed, err := r.cfg.Source.Poll(ctx)
	if err != nil {
		var refused *source.RefusedError
		if errors.As(err, &refused) {
			r.cfg.Metrics.PlansStale()
		} else {
			r.cfg.Metrics.SourceError()
		}
		r.setErr(err)
		r.cfg.Logger.Error("poll plans", "error", err)
		return
	}
	if !changed && r.repo != nil {
		return
	}
	if snap == nil {
		return
	}
	repo, err := plans.Load(snap.FS)
	if err == nil {
		if r.cfg.Tweak != nil {
			r.cfg.Tweak(repo)
		}
		// Through the reconciler's renderer, so the shards this check
		// builds are the cache the next reconcile reuses.
		_, err = r.renderer.Render(repo, plans.Steps{})
	}
	if err == nil && len(repo.Migrations) == 0 {
		err = r.refuseEmpty(ctx)
	}
	if err != nil {
		refused := r.cfg.Source.Refuse(snap.Revision, err)
		r.cfg.Metrics.PlansRefused()
		r.setErr(refused)
		r.cfg.Logger.Error("plan commit refused; the last good one stays in force", "revision", snap.Revision, "error", err)
		return
	}
	if err := r.cfg.Source.Accept(snap.Revision); err != nil {
		r.setErr(err)
		return
	}
	r.remember(repo, false)
	if r.cfg.OnPlans != nil {
		r.cfg.OnPlans(repo)
	}
	r.mu.Lock()
	r.repo, r.revision, r.lastErr = repo, snap.Revision, nil
	r.mu.Unlock()
	r.cfg.Metrics.PlansInForce(snap.Revision)
	r.cfg.Logger.Info("plans in force", "revision", snap.Revision, "migrations", len(repo.Migrations))
}

// refuseEmpty refuses plans without a migration while a stored one still
// carries traffic: an emptied repository (a wrong path, a bad merge) must
// not roll every migration back. Retiring them all is explicit: set
// rollback: true, let them reach 0%, then remove them.
func (r *Reconciler) refuseEmpty(ctx context.Context) error {
	names, err := r.cfg.Store.Migrations(ctx)
	if err != nil {
		return err
	}
	var busy []string
	for _, name := range names {
		snap, err := r.cfg.Store.Load(ctx, name)
		if err != nil {
			return err
		}
		for _, p := range snap.Services {
			if carrying(p) {
				busy = append(busy, name)
				break
			}
		}
	}
	if len(busy) > 0 {
		return fmt.Errorf("the plans hold no migration, but %s still carry traffic; an empty plan never retires them: set rollback: true on them, let them reach 0%%, then remove them", strings.Join(busy, ", "))
	}
	return nil
}

func (r *Reconciler) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}
