package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// example is the plan repository the CLI tests run against.
var example = filepath.Join("..", "..", "..", "examples", "linkerd-eks")

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
	for _, want := range []string{"WAVE backends", "WAVE api", "WAVE edge", `waiting for wave "backends" to complete`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
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
