package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
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
	Ready(ctx context.Context, cluster, namespace, service string) (bool, string)
}

// Store is the durable progress the reconciler needs.
type Store interface {
	Load(ctx context.Context, migration string) (state.Snapshot, error)
	Save(ctx context.Context, c state.Change) (uint64, error)
	Pending(ctx context.Context, migration string) ([]plans.Request, error)
	Migrations(ctx context.Context) ([]string, error)
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
}

// Reconciler runs the loop.
type Reconciler struct {
	cfg      Config
	renderer *renderer.Renderer

	mu       sync.Mutex
	repo     *plans.Repository // last good
	revision string
	lastErr  error

	// Owned by the loop (Reconcile is not called concurrently).
	defs     map[string]*plans.Migration
	svcDefs  map[plans.ServiceID]*plans.Service
	clusters map[string]*plans.Cluster
	retired  map[string]bool
	warned   map[string]bool
	checked  map[string]preflightResult
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
		clusters: map[string]*plans.Cluster{}, retired: map[string]bool{}, warned: map[string]bool{},
		checked: map[string]preflightResult{},
	}
}

// Status is what the loop last did.
func (r *Reconciler) Status() (revision string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revision, r.lastErr
}

// Run reconciles every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Reconcile(ctx); err != nil && !errors.Is(err, context.Canceled) {
			r.cfg.Logger.Error("reconcile", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

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
	repo, gone, err := r.inForce(ctx, repo)
	if err != nil {
		return err
	}

	steps := plans.Steps{}
	decisions := map[string]plans.Plan{}
	before := map[string]state.Snapshot{}
	render := *repo
	render.Migrations = nil
	for _, m := range repo.Migrations {
		snap, err := r.cfg.Store.Load(ctx, m.Name)
		if err != nil {
			return fmt.Errorf("migration %s: load progress: %w", m.Name, err)
		}
		progress := snap.Services
		if progress == nil {
			progress = map[string]plans.Progress{}
		}
		m = r.withRemoved(m, progress)
		// Operator requests (ferry approve/pause/resume/rollback).
		reqs, err := r.cfg.Store.Pending(ctx, m.Name)
		if err != nil {
			return fmt.Errorf("migration %s: pending requests: %w", m.Name, err)
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
		for _, s := range m.Services() {
			if !r.cfg.Target.CheckReadiness() || !canCheck {
				obs.Readiness[s.Ref()] = plans.Readiness{Ready: true, Reason: "not checked: directory target"}
				continue
			}
			// Traffic only goes to a backend that exists and has ready
			// endpoints (DESIGN.md invariant 1), on either side.
			ok, why := rc.Ready(ctx, m.To, s.Namespace, s.Name)
			obs.Readiness[s.Ref()] = plans.Readiness{Ready: ok, Reason: why}
			ok, why = rc.Ready(ctx, m.From, s.Namespace, s.Name)
			obs.FromReadiness[s.Ref()] = plans.Readiness{Ready: ok, Reason: why}
		}
		// A migration that has not started must pass preflight on every
		// cluster first; until then nothing of it is applied and its
		// services hold with the failures as the reason.
		failures := r.preflight(ctx, repo, m, progress, rev, now)
		if len(failures) > 0 {
			why := "preflight failed: " + strings.Join(failures, "; ")
			for _, s := range m.Services() {
				obs.Readiness[s.Ref()] = plans.Readiness{Ready: false, Reason: why}
			}
		} else {
			render.Migrations = append(render.Migrations, m)
		}
		plan := plans.Decide(now, m, progress, obs)
		if r.cfg.Gates != nil {
			obs.Gates = r.cfg.Gates.Observe(ctx, m, plan, rev, now)
			plan = plans.Decide(now, m, progress, obs)
		}
		// Write-ahead: the intent is durable before traffic moves.
		v, err := r.cfg.Store.Save(ctx, state.Change{
			Migration: m.Name, Version: snap.Version, Services: plan.Progress(),
			Commit: rev, At: now, Events: state.Events(progress, plan, rev), Done: done,
		})
		if err != nil {
			return fmt.Errorf("migration %s: save intent: %w", m.Name, err)
		}
		snap.Version = v
		snap.Services = plan.Progress()
		before[m.Name] = snap
		decisions[m.Name] = plan
		for id, idx := range plan.Steps() {
			steps[id] = idx
		}
	}

	res, err := r.renderer.Render(&render, steps)
	if err != nil {
		return fmt.Errorf("render %s: %w", rev, err)
	}
	if err := r.cfg.Target.Apply(ctx, res); err != nil {
		return fmt.Errorf("apply %s: %w", rev, err)
	}
	// Every target holds the new steps: the moves are done.
	for _, m := range repo.Migrations {
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
	r.retire(ctx, gone)
	if r.cfg.OnReconcile != nil {
		r.cfg.OnReconcile(repo, decisions)
	}
	return nil
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
	if c, ok := r.checked[m.Name]; ok && c.revision == rev && now.Sub(c.at) < preflightTTL {
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
	r.checked[m.Name] = preflightResult{revision: rev, at: now, failures: failures}
	return failures
}

// poll takes a new commit when there is one. A commit that fails to load
// or render is refused and the last good plans stay in force.
func (r *Reconciler) poll(ctx context.Context) {
	snap, changed, err := r.cfg.Source.Poll(ctx)
	if err != nil {
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
		r.setErr(refused)
		r.cfg.Logger.Error("plan commit refused; the last good one stays in force", "revision", snap.Revision, "error", err)
		return
	}
	if err := r.cfg.Source.Accept(snap.Revision); err != nil {
		r.setErr(err)
		return
	}
	r.remember(repo)
	for name, c := range repo.Clusters {
		r.clusters[name] = c
	}
	if r.cfg.OnPlans != nil {
		r.cfg.OnPlans(repo)
	}
	r.mu.Lock()
	r.repo, r.revision, r.lastErr = repo, snap.Revision, nil
	r.mu.Unlock()
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
