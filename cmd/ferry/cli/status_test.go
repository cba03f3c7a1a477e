package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

// example is the plan repository the CLI tests run against.
var example = filepath.Join("..", "..", "..", "examples", "linkerd-eks")

// stopClock makes the commands read now as the time until the test ends.
func stopClock(t *testing.T, now time.Time) {
	t.Helper()
	clock = func() time.Time { return now }
	t.Cleanup(func() { clock = time.Now })
}

// ferry runs the CLI in-process with the example plans and a state dir.
func ferry(t *testing.T, stateDir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--plans", example, "--state-dir", stateDir)
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusNoProgress(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := ferry(t, dir, "status", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var ms []MigrationStatus
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Migration != "onprem-to-eks" {
		t.Fatalf("migrations: %+v", ms)
	}
	n := 0
	for _, w := range ms[0].Waves {
		for _, s := range w.Services {
			n++
			if s.State != "pending" || s.Step != 0 || s.Weight != 0 {
				t.Errorf("%s: state %s step %d weight %d, want pending at step 0", s.Service, s.State, s.Step, s.Weight)
			}
			if s.Blocked == "" {
				t.Errorf("%s: no reason", s.Service)
			}
		}
	}
	if n != 15 {
		t.Errorf("%d services, want 15", n)
	}

	// A read creates no state.
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("status wrote %v", m)
	}

	for _, format := range []string{"table", "yaml"} {
		t.Run(format, func(t *testing.T) {
			code, out, errs := ferry(t, dir, "status", "onprem-to-eks", "-o", format)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			for _, want := range []string{"shop/inventory", "shop/returns", "pending"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	_, out, _ = ferry(t, dir, "status")
	for _, want := range []string{"WAVE backends: 0 of 5 complete", "WAVE api", "WAVE edge", `waiting for wave "backends" to complete`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	narrowed := []struct {
		target   string
		services int
	}{
		{"onprem-to-eks/api", 5},
		{"onprem-to-eks/shop/cart", 1},
	}
	for _, tt := range narrowed {
		t.Run(tt.target, func(t *testing.T) {
			code, out, errs := ferry(t, dir, "status", tt.target, "-o", "json")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var ms []MigrationStatus
			if err := json.Unmarshal([]byte(out), &ms); err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || len(ms[0].Waves) != 1 || len(ms[0].Waves[0].Services) != tt.services {
				t.Errorf("status %s: %+v, want one wave of %d services", tt.target, ms, tt.services)
			}
		})
	}
}

func TestOperate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for _, args := range [][]string{
		{"pause", "onprem-to-eks/backends", "--by", "alice", "--reason", "incident 42"},
		{"approve", "onprem-to-eks/shop/catalog", "--step", "50", "--by", "bob"},
		{"rollback", "onprem-to-eks/shop/returns", "--by", "carol"},
	} {
		if code, _, errs := ferry(t, dir, args...); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}

	_, out, _ := ferry(t, dir, "status")
	for _, want := range []string{
		"requested: pause by alice (incident 42)",
		"requested: approve of step 50 by bob",
		"requested: rollback by carol",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var ms []MigrationStatus
	_, js, _ := ferry(t, dir, "status", "-o", "json")
	if err := json.Unmarshal([]byte(js), &ms); err != nil {
		t.Fatal(err)
	}
	paused := 0
	for _, w := range ms[0].Waves {
		for _, s := range w.Services {
			for _, r := range s.Requests {
				if strings.HasPrefix(r, "requested: pause") {
					paused++
				}
			}
		}
	}
	if paused != 5 {
		t.Errorf("%d services with a pause requested, want the 5 of wave backends", paused)
	}
}

func TestOperateUnknownScope(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pause", "nope"}, ExitInvalid, "migrations are: onprem-to-eks"},
		{[]string{"pause", "onprem-to-eks/nope"}, ExitInvalid, "waves are: backends, api, edge"},
		{[]string{"rollback", "onprem-to-eks/shop/nope"}, ExitInvalid, "services are: shop/inventory"},
		{[]string{"approve", "onprem-to-eks", "--step", "51"}, ExitInvalid, "no step has that weight"},
		{[]string{"resume", "onprem-to-eks/a/b/c"}, ExitUsage, "expected MIGRATION"},
		{[]string{"pause", "onprem-to-eks", "--step", "5"}, ExitUsage, "unknown flag"},
		{[]string{"history", "nope"}, ExitInvalid, "migrations are"},
		{[]string{"status", "nope"}, ExitInvalid, "migrations are"},
		{[]string{"plan", "timeline", "nope"}, ExitInvalid, "migrations are"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errs := ferry(t, dir, append(tt.args, "--by", "alice")...)
			if tt.args[0] == "status" || tt.args[0] == "history" || tt.args[0] == "plan" {
				code, _, errs = ferry(t, dir, tt.args...)
			}
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errs, tt.code, tt.want)
			}
		})
	}
	_, out, _ := ferry(t, dir, "history", "onprem-to-eks")
	if !strings.Contains(out, "no history") {
		t.Errorf("refused requests are in the history:\n%s", out)
	}
}

func TestStatusProgress(t *testing.T) {
	for _, at := range []string{
		"2026-11-23T11:02:00Z", // Monday noon in Copenhagen: the window is open
		"2026-11-23T22:02:00Z", // Monday night: closed
		"2026-11-28T11:02:00Z", // Black Friday freeze
	} {
		t.Run(at, func(t *testing.T) { testStatusProgress(t, at) })
	}
}

func testStatusProgress(t *testing.T, at string) {
	now, err := time.Parse(time.RFC3339, at)
	if err != nil {
		t.Fatal(err)
	}
	stopClock(t, now)
	dir := filepath.Join(t.TempDir(), "state")
	st, err := state.NewBolt(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	moved := plans.NewProgress(now.Add(-5 * time.Minute))
	moved.Step, moved.Weight, moved.State = 1, 5, plans.StateProgressing
	failing := plans.NewProgress(now.Add(-time.Hour))
	failing.Step, failing.Weight, failing.State = 2, 25, plans.StateHolding
	failing.Blocked = "gate success-rate failed: 0.98 < 0.995"
	gone := plans.NewProgress(now.Add(-time.Hour))
	gone.Step, gone.Weight, gone.State = 1, 5, plans.StateProgressing
	if _, err := st.Save(t.Context(), state.Change{Migration: "onprem-to-eks", Services: map[string]plans.Progress{
		"shop/inventory": moved,
		"shop/pricing":   failing,
		"shop/legacy":    gone,
	}, Commit: "0123456789abcdef", At: now}); err != nil {
		t.Fatal(err)
	}

	code, out, errs := ferry(t, dir, "status", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var ms []MigrationStatus
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatal(err)
	}
	byRef := map[string]ServiceStatus{}
	for _, w := range ms[0].Waves {
		for _, s := range w.Services {
			byRef[s.Service] = s
		}
	}
	inv := byRef["shop/inventory"]
	if inv.Step != 1 || inv.Weight != 5 || !strings.HasPrefix(inv.Blocked, "soaking: ") && !strings.HasPrefix(inv.Blocked, "in deny window") {
		t.Errorf("inventory: %+v, want step 1, weight 5, soaking", inv)
	}
	if want := moved.Since.Add(15 * time.Minute); inv.Next.Before(want) {
		t.Errorf("inventory: next %s, want not before the end of the soak at %s", inv.Next, want)
	}
	if p := byRef["shop/pricing"]; p.Step != 2 || p.State != plans.StateHolding || !strings.HasPrefix(p.Blocked, failing.Blocked) {
		t.Errorf("pricing: %+v, want holding at step 2 for the recorded reason", p)
	}
	if l, ok := byRef["shop/legacy"]; !ok || l.Blocked != "removed from the plan" {
		t.Errorf("legacy: %+v, want listed as removed from the plan", l)
	}
	if c := byRef["shop/catalog"]; c.State != plans.StatePending || c.Step != 0 {
		t.Errorf("catalog: %+v, want pending at step 0", c)
	}
	_, table, _ := ferry(t, dir, "status")
	for _, want := range []string{"WAVE (removed from the plan)", "commit 0123456789abcdef", "shop/inventory"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestStatusApplied checks status once the daemon applied requests.
func TestStatusApplied(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 2, 0, 0, time.UTC)
	stopClock(t, now)
	dir := filepath.Join(t.TempDir(), "state")
	repo, err := loadDir(example)
	if err != nil {
		t.Fatal(err)
	}
	m := repo.Migration("onprem-to-eks")
	at := plans.NewProgress(now.Add(-time.Hour))
	at.Step, at.Weight, at.State = 2, 25, plans.StateProgressing
	progress := map[string]plans.Progress{"shop/inventory": at, "shop/pricing": at}
	for _, r := range []plans.Request{
		{Kind: plans.RequestPause, Migration: m.Name, Service: "shop/inventory", By: "alice", At: now},
		{Kind: plans.RequestRollback, Migration: m.Name, Service: "shop/pricing", By: "bob", At: now},
	} {
		if progress, _, err = plans.ApplyRequest(m, progress, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := state.NewBolt(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(t.Context(), state.Change{Migration: m.Name, Services: progress, At: now}); err != nil {
		t.Fatal(err)
	}
	_, out, _ := ferry(t, dir, "status", "-o", "json")
	var ms []MigrationStatus
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatal(err)
	}
	got := map[string]ServiceStatus{}
	for _, s := range ms[0].Waves[0].Services {
		got[s.Service] = s
	}
	if s := got["shop/inventory"]; s.State != plans.StatePaused || !strings.HasPrefix(s.Blocked, "paused by alice") || !s.Next.IsZero() {
		t.Errorf("inventory: %+v, want paused by alice, no next move", s)
	}
	if s := got["shop/pricing"]; s.State != plans.StateRollingBack || !strings.HasPrefix(s.Blocked, "rolled back by bob") {
		t.Errorf("pricing: %+v, want rolling back by bob", s)
	}
}
