package gates

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ferry-dev/ferry/plans"
)

// HookPayload is the JSON body a webhook gate posts, like Flagger's
// confirm-promotion hooks: enough for the receiver to decide (or to ask a
// person) whether this promotion may go ahead.
type HookPayload struct {
	Gate      string `json:"gate"`
	Migration string `json:"migration"`
	Wave      string `json:"wave"`
	// Service is "namespace/name".
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	From      string `json:"from"`
	To        string `json:"to"`
	// FromStep and ToStep are step indexes; FromWeight and Weight their
	// weights (percent of traffic on the `to` side).
	FromStep   int    `json:"fromStep"`
	ToStep     int    `json:"toStep"`
	FromWeight int    `json:"fromWeight"`
	Weight     int    `json:"weight"`
	Commit     string `json:"commit,omitempty"`
}

// Payload returns what a webhook gate posts for t.
func Payload(g plans.Gate, t Target) HookPayload {
	p := HookPayload{Gate: g.Name, Wave: t.Wave, FromStep: t.FromStep, ToStep: t.ToStep, Weight: t.Weight, Commit: t.Commit}
	if m := t.Migration; m != nil {
		p.Migration, p.From, p.To = m.Name, m.From, m.To
		if t.FromStep >= 0 && t.FromStep < len(m.Steps) {
			p.FromWeight = m.Steps[t.FromStep].Weight
		}
	}
	if s := t.Service; s != nil {
		p.Service, p.Namespace, p.Name = s.Ref(), s.Namespace, s.Name
	}
	return p
}

// webhook posts the promotion to the gate's URL: a 2xx answer passes, any
// other status fails, and no answer (timeout, connection refused) is
// inconclusive.
func (e *Evaluator) webhook(ctx context.Context, g plans.Gate, t Target) plans.GateResult {
	if g.Webhook == nil || g.Webhook.URL == "" {
		return inconclusive(g.Name + ": gate has no URL")
	}
	body, err := json.Marshal(Payload(g, t))
	if err != nil {
		return inconclusive(fmt.Sprintf("%s: encode payload: %v", g.Name, err))
	}
	limit := timeout(g.Webhook.Timeout)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Webhook.URL, bytes.NewReader(body))
	if err != nil {
		return inconclusive(fmt.Sprintf("%s: %s", g.Name, describe(err, limit)))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client().Do(req)
	if err != nil {
		return inconclusive(fmt.Sprintf("%s: %s", g.Name, describe(err, limit)))
	}
	defer resp.Body.Close()
	// The start of the answer says why, when the hook says no.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	r := plans.GateResult{Value: float64(resp.StatusCode)}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		r.Verdict = plans.Pass
		r.Reason = fmt.Sprintf("%s: %s", g.Name, resp.Status)
		return r
	}
	r.Verdict = plans.Fail
	r.Reason = fmt.Sprintf("%s: %s", g.Name, resp.Status)
	if s := strings.Join(strings.Fields(string(msg)), " "); s != "" {
		r.Reason += ": " + s
	}
	return r
}
