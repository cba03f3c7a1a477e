package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

var (
	splitResource = cluster.TrafficSplits
	linkResource  = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha1", Resource: "links"}
)

// The crash scenario: every service of one wave moves from a to b in ten
// steps of 10, one step per second at most.
const (
	crashMigration = "m"
	crashSoak      = time.Second
	crashDeadline  = 3 * time.Minute
	// promotionsEnv raises the number of promotions (10 per service) for
	// the fault suite, `make test-faults`.
	promotionsEnv     = "FERRY_FAULT_PROMOTIONS"
	defaultPromotions = 20
	// seedEnv replays a run's kill schedule; every run logs its seed.
	seedEnv = "FERRY_FAULT_SEED"
)

func crashPlan(services []string) string {
	refs := make([]string, len(services))
	for i, s := range services {
		refs[i] = "shop/" + s
	}
	return fmt.Sprintf(`clusters: {a: {context: a}, b: {context: b}}
migrations:
  %s:
    from: a
    to: b
    provider: linkerd
    steps: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    soak: %s
    window: {schedule: ["@every 1s"]}
    waves:
      - name: all
        maxConcurrent: %d
        services: [%s]
`, crashMigration, crashSoak, len(services), strings.Join(refs, ", "))
}

// TestCrashDuringPromotions runs `ferry run` against two real API servers
// and SIGKILLs it after a random 0.3 to 2.5 s, over and over, until every
// service is at 100% (issues #6 and #9). Then it checks DESIGN.md's
// invariants on what the daemon left: every service was promoted exactly
// once per step, in order, never before its soak ended; every version of
// every TrafficSplit either cluster ever held summed to 100 and moved one
// step at a time; both clusters end at 100% on b, as the stored progress
// says. At least one kill must land while a move is in flight (written
// ahead, not yet completed): when the random kills miss that window for
// the first half of the promotions, the test aims them, killing as soon as
// a cluster shows a split moving; every third kill is aimed anyway.
func TestCrashDuringPromotions(t *testing.T) {
	t.Parallel()
	promotions := defaultPromotions
	if s := os.Getenv(promotionsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 || n%10 != 0 {
			t.Fatalf("%s=%q: want a multiple of 10 (10 promotions per service), at least 10", promotionsEnv, s)
		}
		promotions = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(seedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, s, err)
		}
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	services := make([]string, promotions/10)
	for i := range services {
		services[i] = fmt.Sprintf("svc%d", i)
	}
	t.Logf("%d promotions: %d services × 10 steps; %s=%d", promotions, len(services), seedEnv, seed)

	env := cluster.StartT(t, "a", "b")
	serveShop(t, env, services)
	repo := t.TempDir()
	gitRepo(t, repo, crashPlan(services))
	dir := t.TempDir()
	stateDir, logPath := filepath.Join(dir, "state"), filepath.Join(dir, "ferry.log")
	store, err := state.NewBolt(stateDir, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run",
		"--url", "file://" + repo, "--branch", "main",
		"--kubeconfig", env.Kubeconfig,
		"--state-dir", stateDir, "--interval", "300ms", "--out", filepath.Join(dir, "out"),
	}, extraRunFlags(t)...)

	sw := watchSplits(t, env, services)
	var (
		start                  = time.Now()
		kills, midMove, aimed  int
		aimedHits, splitAtKill int
		random                 []time.Duration
		wantMidMove            = promotions >= 20
		total                  = 10 * len(services)
		progress               = loadProgress(t, store)
	)
	for run := 1; !finished(progress, len(services)); run++ {
		if time.Since(start) > crashDeadline {
			t.Fatalf("after %s, %d runs and %d kills, not every service is at 100%%:\n%s\nlast lines of the daemon's log:\n%s",
				crashDeadline, run-1, kills, describe(progress), logTail(logPath, 30))
		}
		fmt.Fprintf(appendLog(t, logPath), "=== run %d\n", run)
		sw.drain()
		d := startFerry(t, logPath, args)
		// Random kills rarely land in the few milliseconds a move is in
		// flight; every third kill, and every kill once half the
		// promotions went by without a hit, waits for a split to move.
		aim := run%3 == 0 || wantMidMove && midMove == 0 && stepsDone(progress) >= total/2
		if aim {
			aimed++
			select {
			case <-sw.moved:
			case <-time.After(5 * time.Second):
			case <-d.done:
			}
		} else {
			sleep := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
			random = append(random, sleep)
			select {
			case <-time.After(sleep):
			case <-d.done:
			}
		}
		select {
		case <-d.done:
			t.Fatalf("run %d: the daemon exited by itself: %v\n%s", run, d.err, logTail(logPath, 30))
		default:
		}
		d.kill()
		kills++
		if sw.disagree() {
			splitAtKill++
		}
		progress = loadProgress(t, store)
		if pending(progress) {
			midMove++
			if aim {
				aimedHits++
			}
		}
	}
	t.Logf("%d kills in %s (%d at random after %v, %d aimed at a moving split); %d landed mid-move (%d of them aimed), %d while the clusters disagreed",
		kills, time.Since(start).Round(time.Millisecond), len(random), roundAll(random), aimed, midMove, aimedHits, splitAtKill)
	if wantMidMove && midMove == 0 {
		t.Errorf("none of %d kills landed while a move was in flight: the crash window this test claims to cover was never hit", kills)
	}

	// Invariant 2: one step per promotion, each only after its soak.
	for _, s := range services {
		ref := "shop/" + s
		h, err := store.History(t.Context(), crashMigration, ref)
		if err != nil {
			t.Fatal(err)
		}
		var promotes []state.Event
		for _, e := range h {
			if e.Service != ref {
				continue
			}
			switch e.Kind {
			case state.EventPromote:
				promotes = append(promotes, e)
			case state.EventRollback, state.EventRetire, state.EventRemap:
				t.Errorf("%s: unexpected %s event: %s", ref, e.Kind, e.Reason)
			}
		}
		var got []string
		for _, e := range promotes {
			got = append(got, fmt.Sprintf("%d→%d", e.From, e.To))
		}
		var want []string
		for w := 0; w < 100; w += 10 {
			want = append(want, fmt.Sprintf("%d→%d", w, w+10))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: promotions\n\t%s\nwant one per step, none repeated or skipped:\n\t%s", ref, strings.Join(got, " "), strings.Join(want, " "))
		}
		for i := 1; i < len(promotes); i++ {
			if gap := promotes[i].At.Sub(promotes[i-1].At); gap < crashSoak {
				t.Errorf("%s: promotion %s came %s after %s, before the %s soak ended", ref, got[i], gap, got[i-1], crashSoak)
			}
		}
	}

	// Invariants 1 and 3: what the clusters hold, all along and at the end,
	// and that it matches the stored progress.
	sw.stop()
	for _, v := range sw.violations() {
		t.Error(v)
	}
	for _, s := range services {
		p := progress.Services["shop/"+s]
		if p.Step != 10 || p.Weight != 100 || p.Pending != plans.NoPending {
			t.Errorf("shop/%s: stored step %d (weight %d), pending %d; want step 10 (weight 100), nothing pending", s, p.Step, p.Weight, p.Pending)
		}
		for _, cl := range []string{"a", "b"} {
			if w, err := clusterToWeight(t.Context(), env, cl, s); err != nil {
				t.Error(err)
			} else if w != int64(p.Weight) {
				t.Errorf("cluster %s: split shop/%s gives b %d%%, the stored progress says %d%%", cl, s, w, p.Weight)
			}
		}
	}
	if t.Failed() {
		t.Logf("last lines of the daemon's log:\n%s", logTail(logPath, 40))
	}
}

// serveShop makes, in clusters a and b, namespace shop, a Service with a
// ready endpoint per name and the Linkerd Link to the peer: what the mesh
// and the controllers would provide in a real cluster.
func serveShop(t *testing.T, env *cluster.Env, services []string) {
	t.Helper()
	ctx := t.Context()
	for cl, peer := range map[string]string{"a": "b", "b": "a"} {
		c := env.Clusters[cl].Client
		for _, ns := range []string{"shop", "linkerd-multicluster"} {
			_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		link := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "multicluster.linkerd.io/v1alpha1", "kind": "Link",
			"metadata": map[string]any{"name": peer, "namespace": "linkerd-multicluster"},
			"spec":     map[string]any{"targetClusterName": peer},
		}}
		if _, err := env.Clusters[cl].Dynamic.Resource(linkResource).Namespace("linkerd-multicluster").Create(ctx, link, metav1.CreateOptions{}); err != nil {
			t.Fatalf("cluster %s: %v", cl, err)
		}
		for _, name := range services {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
				Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80}}},
			}
			if _, err := c.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatalf("cluster %s: %v", cl, err)
			}
			ready := true
			slice := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "shop", Labels: map[string]string{"kubernetes.io/service-name": name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			}
			if _, err := c.DiscoveryV1().EndpointSlices("shop").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
				t.Fatalf("cluster %s: %v", cl, err)
			}
		}
	}
}

// gitRepo makes a Git repository in dir whose branch main holds plan.yaml.
func gitRepo(t *testing.T, dir, plan string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "plan.yaml"}, {"commit", "-qm", "plan"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@ferry.invalid",
			"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@ferry.invalid", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// process is one `ferry run` process.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done is closed
}

// startFerry starts ferry with args, its output appended to logPath; the
// test's cleanup kills it.
func startFerry(t *testing.T, logPath string, args []string) *process {
	t.Helper()
	cmd := exec.Command(ferryBin, args...)
	// Dies with the test process, should that be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return startProcess(t, logPath, cmd)
}

// startProcess starts cmd, its output appended to logPath; the test's cleanup
// kills it.
func startProcess(t *testing.T, logPath string, cmd *exec.Cmd) *process {
	t.Helper()
	f := appendLog(t, logPath)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	d := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.kill)
	return d
}

// kill sends SIGKILL, as the OOM killer or a node failure would, and waits
// until the process is gone, so that its file lock is released.
// A process started in a group of its own (make) is killed with its group.
func (d *process) kill() {
	if a := d.cmd.SysProcAttr; a != nil && a.Setpgid {
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	} else {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
}

// appendLog opens the log file for appending; the test closes it.
func appendLog(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// loadProgress reads the stored progress; only while no daemon runs.
func loadProgress(t *testing.T, store *state.Bolt) state.Snapshot {
	t.Helper()
	snap, err := store.Load(t.Context(), crashMigration)
	if err != nil {
		t.Fatalf("read progress: %v", err)
	}
	return snap
}

func finished(s state.Snapshot, services int) bool {
	if len(s.Services) != services {
		return false
	}
	for _, p := range s.Services {
		if p.Weight != 100 || p.Pending != plans.NoPending {
			return false
		}
	}
	return true
}

func pending(s state.Snapshot) bool {
	for _, p := range s.Services {
		if p.Pending != plans.NoPending {
			return true
		}
	}
	return false
}

func stepsDone(s state.Snapshot) int {
	n := 0
	for _, p := range s.Services {
		n += p.Step
	}
	return n
}

func describe(s state.Snapshot) string {
	refs := make([]string, 0, len(s.Services))
	for ref := range s.Services {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	var b strings.Builder
	for _, ref := range refs {
		p := s.Services[ref]
		fmt.Fprintf(&b, "\t%s: weight %d, pending step %d, %s %s\n", ref, p.Weight, p.Pending, p.State, p.Blocked)
	}
	return b.String()
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// clusterToWeight returns the weight the TrafficSplit shop/<svc> of cluster cl
// gives b, and an error when there is none or its weights do not sum to
// 100.
func clusterToWeight(ctx context.Context, env *cluster.Env, cl, svc string) (int64, error) {
	ts, err := env.Clusters[cl].Dynamic.Resource(splitResource).Namespace("shop").Get(ctx, svc, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("cluster %s: split shop/%s: %w", cl, svc, err)
	}
	return splitWeight(cl, ts)
}

// splitWeight reads the weight a split of cluster cl (a or b) gives b.
func splitWeight(cl string, ts *unstructured.Unstructured) (int64, error) {
	return cluster.SplitToWeight(ts, cl, "b")
}

// splitWatch follows every version of the test's TrafficSplits in both
// clusters, through the killings and restarts: each must sum to 100, and
// the weight given to b must only ever go up one step (10) at a time.
type splitWatch struct {
	moved  chan struct{} // a split changed weight since the last drain
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	last map[string]int64 // by cluster/service
	bad  []string
}

func watchSplits(t *testing.T, env *cluster.Env, services []string) *splitWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sw := &splitWatch{moved: make(chan struct{}, 1), cancel: cancel, last: map[string]int64{}}
	ours := map[string]bool{}
	for _, s := range services {
		ours[s] = true
	}
	for _, cl := range []string{"a", "b"} {
		ri := env.Clusters[cl].Dynamic.Resource(splitResource).Namespace("shop")
		// Established before the daemon first runs, so that no version is
		// missed.
		w, err := ri.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("cluster %s: watch TrafficSplits: %v", cl, err)
		}
		sw.wg.Go(func() {
			rv := ""
			for {
				for ev := range w.ResultChan() {
					if ev.Type == watch.Error {
						if ctx.Err() != nil {
							return // stopped: the client's cancellation comes as an error event
						}
						sw.violate(fmt.Sprintf("cluster %s: watch of TrafficSplits failed: %v", cl, apierrors.FromObject(ev.Object)))
						return
					}
					ts, ok := ev.Object.(*unstructured.Unstructured)
					if !ok || !ours[ts.GetName()] {
						continue
					}
					rv = ts.GetResourceVersion()
					sw.observe(cl, ev.Type, ts)
				}
				if ctx.Err() != nil {
					return
				}
				// The server ended the watch (its timeout): resume after the
				// last version seen.
				if w, err = ri.Watch(ctx, metav1.ListOptions{ResourceVersion: rv}); err != nil {
					if ctx.Err() == nil {
						sw.violate(fmt.Sprintf("cluster %s: rewatch TrafficSplits: %v", cl, err))
					}
					return
				}
			}
		})
	}
	t.Cleanup(sw.stop)
	return sw
}

func (sw *splitWatch) observe(cl string, typ watch.EventType, ts *unstructured.Unstructured) {
	key := cl + "/" + ts.GetName()
	if typ == watch.Deleted {
		sw.violate(fmt.Sprintf("cluster %s: split shop/%s was deleted mid-migration", cl, ts.GetName()))
		return
	}
	w, err := splitWeight(cl, ts)
	if err != nil {
		sw.violate("invariant 1: " + err.Error())
		return
	}
	sw.mu.Lock()
	prev, seen := sw.last[key]
	sw.last[key] = w
	sw.mu.Unlock()
	switch {
	case !seen && w > 10:
		sw.violate(fmt.Sprintf("invariant 2: cluster %s: split shop/%s first appeared giving b %d%%", cl, ts.GetName(), w))
	case seen && w != prev && w != prev+10:
		sw.violate(fmt.Sprintf("invariant 2: cluster %s: split shop/%s went from %d%% to %d%% for b in one write", cl, ts.GetName(), prev, w))
	}
	if !seen || w != prev {
		select {
		case sw.moved <- struct{}{}:
		default:
		}
	}
}

func (sw *splitWatch) violate(msg string) {
	sw.mu.Lock()
	sw.bad = append(sw.bad, msg)
	sw.mu.Unlock()
}

func (sw *splitWatch) violations() []string {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return append([]string(nil), sw.bad...)
}

// drain forgets moves seen so far.
func (sw *splitWatch) drain() {
	select {
	case <-sw.moved:
	default:
	}
}

// disagree reports whether, as last seen, a and b split some service
// differently: a kill landed between the two clusters' applies.
func (sw *splitWatch) disagree() bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for key, w := range sw.last {
		if svc, ok := strings.CutPrefix(key, "a/"); ok {
			if wb, ok := sw.last["b/"+svc]; ok && wb != w {
				return true
			}
		}
	}
	return false
}

func (sw *splitWatch) stop() {
	sw.cancel()
	sw.wg.Wait()
}
