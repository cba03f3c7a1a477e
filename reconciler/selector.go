package reconciler

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferry-dev/ferry/plans"
)

// ServiceLister is a Target that can list the Services of a cluster that a
// wave's label selector picks.
type ServiceLister interface {
	Services(ctx context.Context, cluster string, sel *plans.Selector) ([]*plans.Service, error)
}

// withSelected returns m, or a copy of m whose waves with a selector also
// hold the Services of the from cluster the selector matches and no wave
// names already. Without a target that can list Services (directory
// mode), selectors add nothing, as in `ferry render`.
func (r *Reconciler) withSelected(ctx context.Context, m *plans.Migration) (*plans.Migration, error) {
	sl, ok := r.cfg.Target.(ServiceLister)
	if !ok || !slices.ContainsFunc(m.Waves, func(w *plans.Wave) bool { return w.Selector != nil }) {
		return m, nil
	}
	cp := cloneWaves(m)
	for _, w := range cp.Waves {
		if w.Selector == nil {
			continue
		}
		found, err := sl.Services(ctx, m.From, w.Selector)
		if err != nil {
			return nil, fmt.Errorf("wave %s: selector: %w", w.Name, err)
		}
		for _, s := range found {
			if cp.Service(s.Ref()) != nil {
				continue // named in a wave, or picked by an earlier one
			}
			s.Wave = w.Name
			w.Services = append(w.Services, s)
			r.defsMu.Lock()
			r.svcDefs[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = s
			r.defsMu.Unlock()
		}
	}
	return cp, nil
}
