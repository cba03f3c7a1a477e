package gates

import (
	"context"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/plans"
)

// MaxParallel bounds the gates Observe evaluates at once.
const MaxParallel = 8

// TargetFor returns what the gates of decision d are asked about: the
// service's move from its step to the next, or, at the last step, its
// completion there.
func TargetFor(m *plans.Migration, d plans.Decision, commit string, now time.Time) Target {
	from := d.Progress.Step
	to := min(from+1, len(m.Steps)-1)
	t := Target{
		Migration: m, Wave: d.Wave, Service: m.Service(d.Service),
		FromStep: from, ToStep: to, Commit: commit, Progress: d.Progress, Now: now,
	}
	if to >= 0 && to < len(m.Steps) {
		t.Weight = m.Steps[to].Weight
	}
	return t
}

// Observe evaluates the gates a plan lists (plans.Decision.Gates) and
// returns their results by service, for plans.Observations.Gates.
// Prometheus gates are evaluated for every service that lists them, so
// that failures count while a service soaks; webhook gates only when the
// service is due (plans.Decision.Due), as a confirmation hook should be
// called only for a promotion about to happen.
func (e *Evaluator) Observe(ctx context.Context, m *plans.Migration, plan plans.Plan, commit string, now time.Time) map[string][]plans.GateResult {
	out := map[string][]plans.GateResult{}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, MaxParallel)
	)
	for _, d := range plan.Decisions {
		if len(d.Gates) == 0 || m.Service(d.Service) == nil {
			continue
		}
		t := TargetFor(m, d, commit, now)
		for _, g := range d.Gates {
			if g.Kind == plans.GateWebhook && !d.Due {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
					defer func() { <-sem }()
				case <-ctx.Done():
					// Evaluate answers inconclusive at once.
				}
				r := e.Evaluate(ctx, g, t)
				mu.Lock()
				out[d.Service] = append(out[d.Service], r)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}
