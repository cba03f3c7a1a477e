package reconciler_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/source"
	"github.com/ferry-dev/ferry/reconciler/state"
)

const plan = `
clusters: {a: {}, b: {}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 10s
    window: {schedule: ["@every 10s"]}
    waves:
      - name: first
        services: [shop/cart]
      - name: second
        services: [shop/web]
`

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func commit(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-qm", "plan")
}

// newLoop makes a real Git repository holding planText, a source
// following it and a bbolt store, all in temporary directories.
func newLoop(t *testing.T, planText string) (string, *source.Source, *state.Bolt) {
	t.Helper()
	repoDir, stateDir := t.TempDir(), t.TempDir()
	git(t, repoDir, "init", "-q", "-b", "main")
	commit(t, repoDir, planText)
	src, err := source.New(source.Config{URL: "file://" + repoDir, Ref: source.Ref{Branch: "main"}, Interval: time.Second, Timeout: 30 * time.Second}, filepath.Join(stateDir, "source"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	store, err := state.NewBolt(stateDir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return repoDir, src, store
}

// TestTwoWavesToCompletion runs the real loop — git source on a real
// repository, bbolt store, engine, renderer, directory target — with a
// clock that moves 10 s per reconcile: both waves reach 100 % one step per
// tick, and an invalid commit pushed midway changes nothing.
func TestTwoWavesToCompletion(t *testing.T) {
	out := t.TempDir()
	repoDir, src, store := newLoop(t, plan)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var weights []string
	r := reconciler.New(reconciler.Config{
		Source: src, Store: store, Target: &reconciler.DirTarget{Dir: out},
		Now: func() time.Time { return now },
		OnReconcile: func(repo *plans.Repository, d map[string]plans.Plan) {
			m := repo.Migrations[0]
			var ws []string
			for _, s := range m.Services() {
				ws = append(ws, s.Name+"="+itoa(m.Steps[d["m"].Decision(s.Ref()).Progress.Step].Weight))
			}
			weights = append(weights, strings.Join(ws, ","))
		},
	})
	ctx := context.Background()
	for i := 0; i < 12; i++ {
		if i == 3 {
			commit(t, repoDir, strings.Replace(plan, "steps: [0, 50, 100]", "steps: [0, 100, 50]", 1))
		}
		if err := r.Reconcile(ctx); err != nil {
			t.Fatalf("reconcile %d: %v", i, err)
		}
		now = now.Add(10 * time.Second)
	}
	rev, lastErr := r.Status()
	// The invalid commit is refused and stays reported; the first commit
	// stays in force.
	if rev == "" || lastErr == nil || !strings.Contains(lastErr.Error(), "steps[2]: 50 is not greater than the previous step 100") {
		t.Fatalf("status: revision %q, error %v; want the first commit in force and the refusal with its errors", rev, lastErr)
	}
	final := weights[len(weights)-1]
	if final != "cart=100,web=100" {
		t.Fatalf("final weights %s; history %v", final, weights)
	}
	// No step skipped: every weight seen for a service is 0, 50 or 100 and
	// never decreases, and the second wave moved only after the first was
	// done.
	prev := map[string]int{}
	for _, line := range weights {
		for _, kv := range strings.Split(line, ",") {
			name, w, _ := strings.Cut(kv, "=")
			n := atoi(w)
			if n < prev[name] || n-prev[name] > 50 {
				t.Fatalf("%s went %d -> %d; history %v", name, prev[name], n, weights)
			}
			prev[name] = n
		}
		if strings.Contains(line, "cart=50") && !strings.Contains(line, "web=0") {
			t.Fatalf("second wave moved before the first completed: %s", line)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "b", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "weight: 100") {
		t.Fatalf("rendered overlay of b does not hold the final weights:\n%s", b)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestTriggerCoalesces: with an hour between polls, a trigger makes the
// loop reconcile at once, and a burst of triggers makes one or two
// reconciles, not one each.
func TestTriggerCoalesces(t *testing.T) {
	_, src, store := newLoop(t, plan)
	var mu sync.Mutex
	count := 0
	r := reconciler.New(reconciler.Config{
		Source: src, Store: store, Target: &reconciler.DirTarget{Dir: t.TempDir()},
		OnReconcile: func(*plans.Repository, map[string]plans.Plan) {
			mu.Lock()
			count++
			mu.Unlock()
			time.Sleep(50 * time.Millisecond) // a reconcile takes time; triggers pile up meanwhile
		},
	})
	n := func() int { mu.Lock(); defer mu.Unlock(); return count }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx, time.Hour) }()
	for n() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	for range 100 {
		r.Trigger()
	}
	deadline := time.Now().Add(5 * time.Second)
	for n() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := n(); got < 2 || got > 3 {
		t.Fatalf("%d reconciles for 1 start and a burst of 100 triggers, want 2 or 3", got)
	}
}
