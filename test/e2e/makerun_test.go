package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

const (
	// demoExample is what `ferry run --demo` runs by default.
	demoExample = "examples/linkerd-eks"
	// waveOneBudget bounds the demo's first wave: five steps at a tick
	// every 10 s take about 50 s, plus the build.
	waveOneBudget = 150 * time.Second
	// stopBudget bounds a stop after SIGINT: the in-flight reconcile may
	// go on for --drain (30 s by default).
	stopBudget = 45 * time.Second
)

// TestMakeRun runs `make run` as a newcomer does, with state and output in
// temporary directories (RUN_ARGS): it waits until the demo's first wave
// is at 100% in the rendered TrafficSplits of both clusters, presses
// Ctrl-C (SIGINT to make's process group) and checks that the daemon
// stopped cleanly and left its state file. A second `make run` resumes:
// its first render already has the first wave at 100%; SIGINT to the
// daemon alone then makes `make run` exit 0.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed to test `make run`: %v", err)
	}
	repo, err := plans.Load(os.DirFS(filepath.Join(moduleRoot, demoExample)))
	if err != nil {
		t.Fatalf("load %s: %v", demoExample, err)
	}
	if len(repo.Migrations) == 0 || len(repo.Migrations[0].Waves) == 0 {
		t.Fatalf("%s: no migration with a wave", demoExample)
	}
	m := repo.Migrations[0]
	wave := m.Waves[0]
	var waveOne []string
	for _, s := range wave.Services {
		waveOne = append(waveOne, s.Ref())
	}
	dir := t.TempDir()
	stateDir, out, logPath := filepath.Join(dir, "state"), filepath.Join(dir, "out"), filepath.Join(dir, "make.log")
	runArgs := strings.Join(append([]string{"--state-dir", stateDir, "--out", out}, extraRunFlags(t)...), " ")
	makeRun := func() *process {
		fmt.Fprintf(appendLog(t, logPath), "=== make -C %s run RUN_ARGS=%q\n", moduleRoot, runArgs)
		cmd := exec.Command("make", "-C", moduleRoot, "run", "RUN_ARGS="+runArgs)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return startProcess(t, logPath, cmd)
	}

	// First run: from nothing to wave one at 100%.
	begin := time.Now()
	mk := makeRun()
	var last string
	for {
		w, err := toWeights(out, m, waveOne)
		if err == nil && allAt(w, 100) {
			break
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprint(w)
		}
		select {
		case <-mk.done:
			t.Fatalf("make run exited before wave %s reached 100%%: %v\n%s", wave.Name, mk.err, logTail(logPath, 30))
		case <-time.After(500 * time.Millisecond):
		}
		if time.Since(begin) > waveOneBudget {
			t.Fatalf("wave %s not at 100%% in %s after %s; last seen: %s\n%s", wave.Name, out, waveOneBudget, last, logTail(logPath, 30))
		}
	}
	t.Logf("wave %s at 100%% in both clusters' rendered splits after %s", wave.Name, time.Since(begin).Round(time.Second))

	// Ctrl-C reaches make and the daemon. GNU make, interrupted, waits for
	// its child and then kills itself with the same signal, so its own
	// status is "killed by SIGINT" whatever the child did; it reports a
	// child that failed as "make: *** [...] Error N" and one killed by the
	// signal as "... Interrupt". The daemon's clean exit shows as neither,
	// and as its farewell line.
	before, _ := os.ReadFile(logPath)
	if err := syscall.Kill(-mk.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, mk, logPath)
	if ws := mk.cmd.ProcessState.Sys().(syscall.WaitStatus); !(ws.Exited() && ws.ExitStatus() == 0) && !(ws.Signaled() && ws.Signal() == syscall.SIGINT) {
		t.Errorf("make run after Ctrl-C: %v; want exit 0, or make's own death by SIGINT\n%s", mk.cmd.ProcessState, logTail(logPath, 20))
	}
	output, _ := os.ReadFile(logPath)
	output = output[len(before):]
	if bad := regexp.MustCompile(`(?m)^make: \*\*\*.*$`).Find(output); bad != nil {
		t.Errorf("make run after Ctrl-C: the daemon did not exit 0: %s\n%s", bad, logTail(logPath, 20))
	}
	if !strings.Contains(string(output), "ferry: stopped; progress is saved") {
		t.Errorf("make run after Ctrl-C: the daemon did not say it stopped cleanly\n%s", logTail(logPath, 20))
	}
	if _, err := os.Stat(filepath.Join(stateDir, state.BoltFile)); err != nil {
		t.Fatalf("no state file after make run: %v", err)
	}

	// Second run: resumes. The rendered output is removed first, so what
	// is read is the new daemon's first render.
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	mk = makeRun()
	for {
		w, err := toWeights(out, m, waveOne)
		if err == nil {
			if !allAt(w, 100) {
				t.Errorf("first render after the restart: wave %s at %v; want 100%% everywhere: progress was not resumed", wave.Name, w)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("first render after the restart: %v", err)
		}
		select {
		case <-mk.done:
			t.Fatalf("second make run exited before it rendered: %v\n%s", mk.err, logTail(logPath, 30))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(begin) > time.Minute {
			t.Fatalf("second make run rendered nothing to %s within a minute\n%s", out, logTail(logPath, 30))
		}
	}

	// SIGINT to the daemon alone: make sees its child exit and exits with
	// its status, which must be 0.
	pid, err := descendant(mk.cmd.Process.Pid, "ferry")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, mk, logPath)
	if !mk.cmd.ProcessState.Success() {
		t.Errorf("make run after SIGINT to the daemon: %v; want exit status 0\n%s", mk.cmd.ProcessState, logTail(logPath, 20))
	}
	store, err := state.NewBolt(stateDir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := store.Load(t.Context(), m.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range waveOne {
		if p := snap.Services[ref]; p.Weight != 100 {
			t.Errorf("%s: stored weight %d after the second run, want 100", ref, p.Weight)
		}
	}
	if t.Failed() {
		t.Logf("make run's output:\n%s", logTail(logPath, 60))
	}
}

func waitStopped(t *testing.T, mk *process, logPath string) {
	t.Helper()
	select {
	case <-mk.done:
	case <-time.After(stopBudget):
		t.Fatalf("make run still running %s after SIGINT\n%s", stopBudget, logTail(logPath, 20))
	}
}

func allAt(weights map[string]int, w int) bool {
	for _, got := range weights {
		if got != w {
			return false
		}
	}
	return true
}

// toWeights reads the rendered manifests of both clusters of m under out
// and returns, for each service, the weight its TrafficSplit gives m.To;
// when the clusters disagree, the smaller. The error wraps fs.ErrNotExist
// when a cluster has no render yet.
func toWeights(out string, m *plans.Migration, services []string) (map[string]int, error) {
	weights := map[string]int{}
	for _, cl := range []string{m.From, m.To} {
		got, err := renderedWeights(filepath.Join(out, cl, "manifests.yaml"), cl, m)
		if err != nil {
			return nil, err
		}
		for _, ref := range services {
			w, ok := got[ref]
			if !ok {
				return nil, fmt.Errorf("cluster %s: no TrafficSplit for %s", cl, ref)
			}
			if prev, ok := weights[ref]; !ok || w < prev {
				weights[ref] = w
			}
		}
	}
	return weights, nil
}

// renderedWeights parses the TrafficSplits of one cluster's built
// manifests. Linkerd's mirror of a peer's service is named
// <name>-<peer>: in the from cluster those backends are the to side, in
// the to cluster the from side. Weights must sum to 100.
func renderedWeights(path, cl string, m *plans.Migration) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	peer := m.To
	if cl == m.To {
		peer = m.From
	}
	weights := map[string]int{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var obj struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				Backends []struct {
					Service string
					Weight  int
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if obj.Kind != "TrafficSplit" {
			continue
		}
		var sum, remote int
		for _, be := range obj.Spec.Backends {
			sum += be.Weight
			if strings.HasSuffix(be.Service, "-"+peer) {
				remote += be.Weight
			}
		}
		ref := obj.Metadata.Namespace + "/" + obj.Metadata.Name
		if sum != 100 {
			return nil, fmt.Errorf("%s: split %s: weights sum to %d", path, ref, sum)
		}
		if cl == m.From {
			weights[ref] = remote
		} else {
			weights[ref] = sum - remote
		}
	}
	return weights, nil
}

// descendant returns the pid of the first process named comm among the
// descendants of pid, from /proc.
func descendant(pid int, comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parent := map[int]int{}
	name := map[int]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		parent[p], name[p] = ppid, s[open+1:end]
	}
	for p, n := range name {
		if n != comm {
			continue
		}
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				return p, nil
			}
		}
	}
	return 0, fmt.Errorf("no process %q under pid %d", comm, pid)
}
