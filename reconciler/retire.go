package reconciler

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/source"
)

// Retirer is a Target that can remove everything ferry created for a
// migration that left the plans.
type Retirer interface {
	Retire(ctx context.Context, migration string) error
}

// remember records the definitions of a commit's clusters, migrations and
// services, so that what a later commit removes while traffic still flows
// to it can be sent back to 0% before its objects go (traffic first,
// exports last). With keep, definitions already known win (an older
// commit read after a restart fills only the gaps).
func (r *Reconciler) remember(repo *plans.Repository, keep bool) {
	r.defsMu.Lock()
	defer r.defsMu.Unlock()
	for _, m := range repo.Migrations {
		if !keep || r.defs[m.Name] == nil {
			r.defs[m.Name] = m
		}
		for _, s := range m.Services() {
			id := plans.ServiceID{Migration: m.Name, Service: s.Ref()}
			if !keep || r.svcDefs[id] == nil {
				r.svcDefs[id] = s
			}
		}
	}
	for name, c := range repo.Clusters {
		if !keep || r.clusters[name] == nil {
			r.clusters[name] = c
		}
	}
}

// historian is a Source that can read an earlier commit.
type historian interface {
	At(rev string) (*source.Snapshot, error)
}

// recall loads the plans of an earlier revision and remembers the
// definitions the reconciler lacks: after a restart, those of migrations
// and services removed before it. Each revision is tried once.
func (r *Reconciler) recall(rev string) {
	h, ok := r.cfg.Source.(historian)
	if !ok || rev == "" {
		return
	}
	r.recallMu.Lock()
	defer r.recallMu.Unlock()
	if r.recalled[rev] {
		return
	}
	r.recalled[rev] = true
	snap, err := h.At(rev)
	if err != nil {
		r.cfg.Logger.Warn("cannot read an earlier plan commit for the definitions of removed services", "revision", rev, "error", err)
		return
	}
	repo, err := plans.Load(snap.FS)
	if err != nil {
		r.cfg.Logger.Warn("cannot load an earlier plan commit for the definitions of removed services", "revision", rev, "error", err)
		return
	}
	if r.cfg.Tweak != nil {
		r.cfg.Tweak(repo)
	}
	r.remember(repo, true)
}

// carrying reports whether p still routes, or is about to route, traffic.
func carrying(p plans.Progress) bool {
	return p.Weight > 0 || p.Step > 0 || (p.Pending != plans.NoPending && p.PendingWeight > 0)
}

// withRemoved returns m, or a copy of m that holds again, with rollback
// set, every service removed from it that still carries traffic and
// whose definition is known: the engine then sends it to 0% on every
// cluster, and only once it is there does it leave the render, which
// prunes its exports. A removed service whose definition is not known
// (ferry restarted since) is retired by the engine without it.
func (r *Reconciler) withRemoved(m *plans.Migration, progress map[string]plans.Progress) *plans.Migration {
	var add []*plans.Service
	for ref, p := range progress {
		if m.Service(ref) != nil || !carrying(p) {
			continue
		}
		id := plans.ServiceID{Migration: m.Name, Service: ref}
		r.defsMu.Lock()
		s := r.svcDefs[id]
		r.defsMu.Unlock()
		if s == nil {
			r.recall(p.Defined)
			r.defsMu.Lock()
			s = r.svcDefs[id]
			r.defsMu.Unlock()
		}
		if s != nil {
			c := *s
			c.Rollback = true
			add = append(add, &c)
		}
	}
	if len(add) == 0 {
		return m
	}
	slices.SortFunc(add, func(a, b *plans.Service) int { return cmpString(a.Ref(), b.Ref()) })
	cp := cloneWaves(m)
	for _, s := range add {
		w := cp.Wave(s.Wave)
		if w == nil {
			w = &plans.Wave{Name: s.Wave}
			cp.Waves = append(cp.Waves, w)
		}
		w.Services = append(w.Services, s)
	}
	return cp
}

// cloneWaves returns a copy of m whose waves and their service lists can
// be added to without touching m, which the plans in force share.
func cloneWaves(m *plans.Migration) *plans.Migration {
	cp := *m
	cp.Waves = nil
	for _, w := range m.Waves {
		wc := *w
		wc.Services = slices.Clone(w.Services)
		cp.Waves = append(cp.Waves, &wc)
	}
	return &cp
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// inForce returns the repository to reconcile: the plans in force plus,
// with rollback set, every migration they no longer hold that still
// carries traffic. It also returns the removed migrations that carry no
// traffic any more: their objects can go.
func (r *Reconciler) inForce(ctx context.Context, repo *plans.Repository) (*plans.Repository, []string, error) {
	stored, err := r.cfg.Store.Migrations(ctx)
	if err != nil {
		return nil, nil, err
	}
	var carry []*plans.Migration
	var gone []string
	for _, name := range stored {
		if repo.Migration(name) != nil {
			continue
		}
		snap, err := r.cfg.Store.Load(ctx, name)
		if err != nil {
			return nil, nil, fmt.Errorf("migration %s: load progress: %w", name, err)
		}
		busy := false
		for _, p := range snap.Services {
			busy = busy || carrying(p)
			if carrying(p) && r.defs[name] == nil {
				r.recall(p.Defined)
			}
		}
		switch def := r.defs[name]; {
		case !busy:
			gone = append(gone, name)
		case def != nil:
			c := *def
			c.Rollback = true
			carry = append(carry, &c)
		default:
			// Removed before this process saw it: without its definition
			// ferry cannot send its traffic back, so it touches nothing.
			r.warnOnce("orphan/"+name, "migration left the plans while traffic still flows to it; nothing of it is changed or pruned: put it back with rollback: true, let it reach 0%, then remove it", "migration", name)
		}
	}
	if len(carry) == 0 {
		return repo, gone, nil
	}
	cp := *repo
	cp.Migrations = slices.Clone(repo.Migrations)
	cp.Clusters = map[string]*plans.Cluster{}
	for k, v := range repo.Clusters {
		cp.Clusters[k] = v
	}
	for _, m := range carry {
		cp.Migrations = append(cp.Migrations, m)
		for _, c := range []string{m.From, m.To} {
			if cp.Clusters[c] == nil && r.clusters[c] != nil {
				cp.Clusters[c] = r.clusters[c]
			}
		}
	}
	slices.SortFunc(cp.Migrations, func(a, b *plans.Migration) int { return cmpString(a.Name, b.Name) })
	return &cp, gone, nil
}

// retire removes the objects of migrations that left the plans and carry
// no traffic, once per process.
func (r *Reconciler) retire(ctx context.Context, gone []string) {
	rt, ok := r.cfg.Target.(Retirer)
	if !ok {
		return
	}
	for _, name := range gone {
		if r.retired[name] {
			continue
		}
		if err := rt.Retire(ctx, name); err != nil {
			r.cfg.Logger.Error("retire migration", "migration", name, "error", err)
			continue
		}
		r.retired[name] = true
		r.cfg.Logger.Info("migration left the plans: its objects are pruned", "migration", name)
	}
}

func (r *Reconciler) warnOnce(key, msg string, args ...any) {
	if r.warned[key] {
		return
	}
	r.warned[key] = true
	r.cfg.Logger.Warn(msg, args...)
}
