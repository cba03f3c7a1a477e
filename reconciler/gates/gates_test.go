package gates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
)

var now = time.Date(2026, 11, 24, 9, 0, 30, 0, time.UTC)

func migration() *plans.Migration {
	db := &plans.Service{Namespace: "shop", Name: "db", Wave: "backends"}
	return &plans.Migration{
		Name: "shop", From: "onprem", To: "eks",
		Steps: []plans.Step{{Weight: 0}, {Weight: 5}, {Weight: 25}, {Weight: 50}, {Weight: 100}},
		Waves: []*plans.Wave{{Name: "backends", Services: []*plans.Service{db}}},
	}
}

func target(m *plans.Migration) gates.Target {
	p := plans.NewProgress(now.Add(-2 * time.Hour))
	p.Step, p.Weight = 2, 25
	return gates.Target{
		Migration: m, Wave: "backends", Service: m.Service("shop/db"),
		FromStep: 2, ToStep: 3, Weight: 50, Commit: "0123abc", Progress: p, Now: now,
	}
}

// verdict is what the tests compare of a result.
type verdict struct {
	Verdict plans.Verdict
	Reason  string
}

func verdictOf(r plans.GateResult) verdict { return verdict{r.Verdict, r.Reason} }

func TestWebhook(t *testing.T) {
	var (
		mu                  sync.Mutex // the handler outlives a timed-out request
		got                 gates.HookPayload
		contentType         string
		status, body, delay = http.StatusOK, "", time.Duration(0)
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		contentType = r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		status, body, delay := status, body, delay
		mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	m := migration()
	e := &gates.Evaluator{}
	gate := func(url string) plans.Gate {
		return plans.Gate{Name: "confirm", Kind: plans.GateWebhook, Webhook: &plans.WebhookGate{URL: url, Timeout: 200 * time.Millisecond}}
	}
	tests := []struct {
		name   string
		url    string
		status int
		body   string
		delay  time.Duration
		want   verdict
	}{
		{"2xx passes", srv.URL, http.StatusOK, "", 0, verdict{plans.Pass, "confirm: 200 OK"}},
		{"202 passes", srv.URL, http.StatusAccepted, "", 0, verdict{plans.Pass, "confirm: 202 Accepted"}},
		{"other status fails with the answer", srv.URL, http.StatusForbidden, "change freeze\nuntil monday\n", 0,
			verdict{plans.Fail, "confirm: 403 Forbidden: change freeze until monday"}},
		{"5xx fails", srv.URL, http.StatusServiceUnavailable, "", 0, verdict{plans.Fail, "confirm: 503 Service Unavailable"}},
		{"timeout is inconclusive", srv.URL, http.StatusOK, "", 2 * time.Second, verdict{plans.Inconclusive, "confirm: no answer within 200ms"}},
		{"connection refused is inconclusive", closed.URL + "/hook?token=s3cret", 0, "", 0, verdict{plans.Inconclusive, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			status, body, delay = tt.status, tt.body, tt.delay
			mu.Unlock()
			start := time.Now()
			r := e.Evaluate(t.Context(), gate(tt.url), target(m))
			if took := time.Since(start); took > time.Second {
				t.Errorf("took %s, the gate's timeout is 200ms", took)
			}
			if r.Gate != "confirm" || !r.At.Equal(now) {
				t.Errorf("result names gate %q at %s", r.Gate, r.At)
			}
			if tt.want.Reason == "" {
				if r.Verdict != tt.want.Verdict || !strings.Contains(r.Reason, "connection refused") || strings.Contains(r.Reason, "s3cret") {
					t.Errorf("got %s %q, want %s, connection refused, without the URL's token", r.Verdict, r.Reason, tt.want.Verdict)
				}
				return
			}
			if diff := cmp.Diff(tt.want, verdictOf(r)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	want := gates.HookPayload{
		Gate: "confirm", Migration: "shop", Wave: "backends", Service: "shop/db", Namespace: "shop", Name: "db",
		From: "onprem", To: "eks", FromStep: 2, ToStep: 3, FromWeight: 25, Weight: 50, Commit: "0123abc",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	if contentType != "application/json" {
		t.Errorf("Content-Type %q", contentType)
	}
}

func TestWebhookHonoursContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	g := plans.Gate{Name: "confirm", Kind: plans.GateWebhook, Webhook: &plans.WebhookGate{URL: srv.URL}}
	r := (&gates.Evaluator{}).Evaluate(ctx, g, target(migration()))
	if r.Verdict != plans.Inconclusive {
		t.Errorf("cancelled: %s %q, want inconclusive", r.Verdict, r.Reason)
	}
}

func TestSoak(t *testing.T) {
	m := migration()
	tg := target(m)
	g := plans.Gate{Name: "a-day", Kind: plans.GateSoak, Soak: 2*time.Hour + 3*time.Minute + 12*time.Second}
	if diff := cmp.Diff(verdict{plans.Inconclusive, "soaking: 3m12s left"}, verdictOf(gates.Soak(g, tg))); diff != "" {
		t.Errorf("soaking (-want +got):\n%s", diff)
	}
	g.Soak = time.Hour
	if diff := cmp.Diff(verdict{plans.Pass, "a-day at step for 2h0m0s"}, verdictOf(gates.Soak(g, tg))); diff != "" {
		t.Errorf("soaked (-want +got):\n%s", diff)
	}
}

func TestApproval(t *testing.T) {
	m := migration()
	g := plans.Gate{Name: "sign-off", Kind: plans.GateApproval}
	e := &gates.Evaluator{}
	if diff := cmp.Diff(verdict{plans.Inconclusive, "waiting for approval of step 50"}, verdictOf(e.Evaluate(t.Context(), g, target(m)))); diff != "" {
		t.Errorf("without approval (-want +got):\n%s", diff)
	}
	m.Approvals = []plans.Approval{{Wave: "backends", Step: 50, By: "alice"}}
	if diff := cmp.Diff(verdict{plans.Pass, "step 50 approved by alice"}, verdictOf(e.Evaluate(t.Context(), g, target(m)))); diff != "" {
		t.Errorf("approved in Git (-want +got):\n%s", diff)
	}
	m.Approvals = nil
	tg := target(m)
	tg.Progress.Approvals = []plans.CLIApproval{{Step: 50, By: "bob", At: now}}
	if diff := cmp.Diff(verdict{plans.Pass, "step 50 approved by bob"}, verdictOf(e.Evaluate(t.Context(), g, tg))); diff != "" {
		t.Errorf("approved with the CLI (-want +got):\n%s", diff)
	}
}

func TestEvaluateAllKeepsOrder(t *testing.T) {
	m := migration()
	gs := []plans.Gate{
		{Name: "a", Kind: plans.GateSoak, Soak: time.Minute},
		{Name: "b", Kind: plans.GateApproval},
		{Name: "c", Kind: "bogus"},
	}
	rs := (&gates.Evaluator{}).EvaluateAll(t.Context(), gs, target(m))
	var got []string
	for _, r := range rs {
		got = append(got, r.Gate+" "+string(r.Verdict))
	}
	want := []string{"a pass", "b inconclusive", "c inconclusive"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}
