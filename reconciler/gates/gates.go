package gates

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/plans"
)

// DefaultTimeout bounds a query or a hook whose gate sets no timeout.
const DefaultTimeout = 10 * time.Second

// Target is the promotion a gate is asked about.
type Target struct {
	Migration *plans.Migration
	Wave      string
	Service   *plans.Service
	// FromStep and ToStep are indexes into Migration.Steps; Weight is the
	// weight of ToStep.
	FromStep, ToStep int
	Weight           int
	// Commit is the plan revision the decision is taken at.
	Commit   string
	Progress plans.Progress
	// Now is the time of the evaluation, stamped on results and used for
	// soak.
	Now time.Time
}

// Evaluator evaluates gates. The zero value evaluates soak and approval
// gates only; prometheus gates need Clusters with Prometheus URLs.
type Evaluator struct {
	// Clusters gives each cluster's Prometheus base URL.
	Clusters map[string]*plans.Cluster
	// HTTP is the client for queries and hooks; http.DefaultClient when
	// nil. Timeouts come from the gates, not from the client.
	HTTP *http.Client
	// Timed, when set, is told how long each evaluation took (metrics).
	Timed func(kind plans.GateKind, d time.Duration)
}

// Evaluate evaluates one gate for t.
func (e *Evaluator) Evaluate(ctx context.Context, g plans.Gate, t Target) plans.GateResult {
	var r plans.GateResult
	if e.Timed != nil {
		start := time.Now()
		defer func() { e.Timed(g.Kind, time.Since(start)) }()
	}
	switch g.Kind {
	case plans.GatePrometheus:
		r = e.prometheus(ctx, g, t)
	case plans.GateWebhook:
		r = e.webhook(ctx, g, t)
	case plans.GateSoak:
		r = Soak(g, t)
	case plans.GateApproval:
		r = Approval(g, t)
	default:
		r = inconclusive(fmt.Sprintf("%s: unknown gate kind %q", g.Name, g.Kind))
	}
	r.Gate, r.At = g.Name, t.Now
	return r
}

// EvaluateAll evaluates the gates concurrently and returns their results in
// the gates' order.
func (e *Evaluator) EvaluateAll(ctx context.Context, gs []plans.Gate, t Target) []plans.GateResult {
	out := make([]plans.GateResult, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = e.Evaluate(ctx, g, t)
		}()
	}
	wg.Wait()
	return out
}

func (e *Evaluator) client() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return http.DefaultClient
}

// Soak passes once the service has been at its step for the gate's
// duration; before that it is inconclusive, which holds without counting
// as a failure.
func Soak(g plans.Gate, t Target) plans.GateResult {
	at := t.Now.Sub(t.Progress.Since)
	if left := g.Soak - at; left > 0 {
		r := inconclusive(fmt.Sprintf("soaking: %s left", left.Round(time.Second)))
		r.Value = at.Seconds()
		return r
	}
	return plans.GateResult{Gate: g.Name, Verdict: plans.Pass, Value: at.Seconds(),
		Reason: fmt.Sprintf("%s at step for %s", g.Name, at.Round(time.Second))}
}

// Approval passes when someone approved the promotion to t.Weight, in Git
// or with `ferry approve`; until then it is inconclusive.
func Approval(g plans.Gate, t Target) plans.GateResult {
	if t.Migration == nil || t.Service == nil {
		return inconclusive(g.Name + ": no service to approve")
	}
	by, ok := plans.ApprovedBy(t.Migration, t.Migration.Wave(t.Wave), t.Service, t.Progress, t.Weight)
	if !ok {
		return inconclusive(fmt.Sprintf("waiting for approval of step %d", t.Weight))
	}
	return plans.GateResult{Gate: g.Name, Verdict: plans.Pass, Reason: fmt.Sprintf("step %d approved by %s", t.Weight, by)}
}

func inconclusive(reason string) plans.GateResult {
	return plans.GateResult{Verdict: plans.Inconclusive, Reason: reason}
}

func timeout(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return DefaultTimeout
}

// describe words a failed request without its URL, which may carry a
// token in its query, and says a timeout plainly.
func describe(err error, limit time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", limit)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
