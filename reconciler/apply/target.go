package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/preflight"
	"github.com/ferry-dev/ferry/renderer"
)

var _ reconciler.Target = (*Target)(nil)

// OverlayInventory is the inventory of objects the user's overlay adds
// (renderer.Object.Migration empty).
const OverlayInventory = "overlay"

// MaxParallelClusters bounds how many clusters one Apply writes to at once;
// each cluster's own calls are bounded by its Options.Concurrency.
const MaxParallelClusters = 8

// Target applies a render to every cluster that has an Applier; it is the
// reconciler's Target for real clusters. Clusters are applied concurrently,
// the migrations of one cluster one after another.
type Target struct {
	appliers map[string]*Applier

	mu     sync.Mutex
	last   map[string]map[string]ChangeSet
	failed map[string]bool   // migrations the last Apply failed for, on any cluster
	routes map[string]string // plan cluster -> applier; nil: by name
}

// Route makes the plan's clusters reach their appliers through their
// kubeconfig contexts (clusters.<name>.context): appliers are then keyed
// by context, and a cluster without a context is render-only.
func (t *Target) Route(repo *plans.Repository) {
	routes := map[string]string{}
	for name, c := range repo.Clusters {
		if c.Context != "" {
			routes[name] = c.Context
		}
	}
	t.mu.Lock()
	t.routes = routes
	t.mu.Unlock()
}

// applier returns the applier of a plan cluster, or nil.
func (t *Target) applier(cluster string) *Applier {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.routes == nil {
		return t.appliers[cluster]
	}
	cx, ok := t.routes[cluster]
	if !ok {
		return nil
	}
	return t.appliers[cx]
}

// NewTarget returns a Target over appliers, by cluster name. Clusters of a
// render without an Applier (render-only clusters) are left alone.
func NewTarget(appliers map[string]*Applier) *Target {
	return &Target{appliers: appliers}
}

// CheckReadiness reports true: a cluster target can check readiness (Ready).
func (t *Target) CheckReadiness() bool { return true }

// Ready reports whether namespace/service has ready endpoints in cluster.
func (t *Target) Ready(ctx context.Context, cluster, namespace, service string) plans.Readiness {
	a := t.applier(cluster)
	if a == nil {
		return plans.Readiness{Reason: fmt.Sprintf("cluster %s: no API access configured (no kubeconfig context): readiness cannot be checked", cluster)}
	}
	return a.Readiness(ctx, namespace, service)
}

// Apply applies res to every cluster with an Applier, one inventory per
// migration, and returns every failure joined.
func (t *Target) Apply(ctx context.Context, res *renderer.Result) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		last   = map[string]map[string]ChangeSet{}
		failed = map[string]bool{}
	)
	sem := make(chan struct{}, MaxParallelClusters)
	for _, out := range res.Clusters {
		a := t.applier(out.Name)
		if a == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			byMig := map[string][]renderer.Object{}
			for _, o := range out.Objects {
				m := o.Migration
				if m == "" {
					m = OverlayInventory
				}
				byMig[m] = append(byMig[m], o)
			}
			names := make([]string, 0, len(byMig))
			for m := range byMig {
				names = append(names, m)
			}
			slices.Sort(names)
			sets := map[string]ChangeSet{}
			var cerrs []error
			for _, m := range names {
				cs, err := a.Apply(ctx, m, byMig[m])
				sets[m] = cs
				if err != nil {
					cerrs = append(cerrs, fmt.Errorf("migration %s: %w", m, err))
					mu.Lock()
					failed[m] = true
					mu.Unlock()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			last[out.Name] = sets
			errs = append(errs, cerrs...)
		})
	}
	wg.Wait()
	t.mu.Lock()
	t.last, t.failed = last, failed
	t.mu.Unlock()
	return errors.Join(errs...)
}

// Failed reports, after an Apply that returned an error, whether it failed
// for migration on any cluster. Objects of the user's overlays belong to
// no migration: when they failed, every migration counts as failed.
func (t *Target) Failed(migration string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed[migration] || t.failed[OverlayInventory]
}

// LastChanges returns the change sets of the last Apply by cluster and
// migration, for status and events.
func (t *Target) LastChanges() map[string]map[string]ChangeSet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Retire prunes migration's inventory on every cluster (see
// Applier.Retire).
func (t *Target) Retire(ctx context.Context, migration string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, a := range t.appliers {
		wg.Go(func() {
			_, err := a.Retire(ctx, migration)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Preflight runs the preflight checks of every cluster of res that has an
// Applier and returns the failed ones in words.
func (t *Target) Preflight(ctx context.Context, repo *plans.Repository, res *renderer.Result) []string {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out []string
	)
	for _, c := range res.Clusters {
		a := t.applier(c.Name)
		if a == nil {
			continue
		}
		wg.Go(func() {
			rs := preflight.Check(ctx, a.cfg, repo, c, a.opts.Timeout)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				if !r.OK {
					out = append(out, fmt.Sprintf("cluster %s: %s: %s", r.Cluster, r.Check, r.Reason))
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(out)
	return out
}

// Services lists the Services of a plan cluster that sel matches, for wave
// selectors. Services ferry made (the local Services) and the mirrors a
// mesh made of the peer's are not candidates.
func (t *Target) Services(ctx context.Context, cluster string, sel *plans.Selector) ([]*plans.Service, error) {
	a := t.applier(cluster)
	if a == nil {
		return nil, fmt.Errorf("cluster %s: no API access configured (no kubeconfig context)", cluster)
	}
	return a.Services(ctx, sel)
}
