package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/netcut"
)

// TestFaultLeaderPartition runs two replicas of the daemon with leader
// election, the kube store and cluster a as their home (the Lease, the
// progress), and cuts the leader off cluster a mid-wave: its kubeconfig
// reaches a only through a TCP proxy that the test closes, with every
// connection through it (a network partition of that replica).
//
// Nothing lost means: at most one writer at any time — the ex-leader's
// ferry_apply_objects_total stops growing before the other replica's
// starts, its ferry_leader drops to 0 and its log says it stopped leading
// before the other's says it leads, and the Lease holder changes from the
// one to the other; the wave continues to 100% under the new leader on
// both clusters; every version of every split on both clusters sums to
// 100 and moves up one step at a time; the history has one promotion per
// step (none repeated or skipped) and no rollback.
func TestFaultLeaderPartition(t *testing.T) {
	t.Parallel()
	const migration = "m"
	services := faultServices(5)
	env := cluster.StartT(t, "a", "b")
	serveShop(t, env, services)
	if _, err := env.Clusters["a"].Client.CoreV1().Namespaces().Create(t.Context(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferry-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	repo := t.TempDir()
	gitRepo(t, repo, strings.Replace(crashPlan(services), "soak: 1s", "soak: 2s", 1))
	wa, wb := watchFault(t, env, "a", 10), watchFault(t, env, "b", 10)

	// Replica 1 reaches a through the proxy.
	p := netcut.New(t, env.Clusters["a"].Config.Host)
	kc, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc.Clusters["a"].Server = "https://" + p.Addr()
	proxied := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, proxied); err != nil {
		t.Fatal(err)
	}
	args := func(kubeconfig string) []string {
		return []string{"--url", "file://" + repo, "--branch", "main", "--kubeconfig", kubeconfig,
			"--state-dir", t.TempDir(), "--out", filepath.Join(t.TempDir(), "out"), "--interval", "300ms",
			"--leader-elect", "--store", "kube", "--home-context", "a", "--namespace", "ferry-system"}
	}
	r1 := startDaemon(t, nil, args(proxied)...)
	waitFor(t, "replica 1 leads", 30*time.Second, func() bool { return r1.metric("ferry_leader") == "ferry_leader 1" })
	r2 := startDaemon(t, nil, args(env.Kubeconfig)...)
	holder1 := faultLeaseHolder(t, env)

	// Both replicas' metrics, sampled every 100 ms from now on.
	mon := monitorReplicas(t, r1, r2)
	wa.drain()
	wa.waitFor(t, 30, 60*time.Second)
	if mon.leaderOf(1) != 0 || mon.firstWrite(1) != (time.Time{}) {
		t.Fatalf("replica 2 leads or wrote before the cut")
	}
	cut := time.Now()
	p.Cut()
	waitFor(t, "replica 2 takes over", 60*time.Second, func() bool { return mon.leaderOf(1) == 1 })
	t.Logf("replica 2 leads %s after the cut", time.Since(cut).Round(time.Millisecond))
	waitFor(t, "every service at 100% on both clusters under replica 2", 60*time.Second, func() bool {
		for _, s := range services {
			if wa.weight(s) != 100 || wb.weight(s) != 100 {
				return false
			}
		}
		return true
	})
	t.Logf("wave at 100%% on both clusters %s after the cut", time.Since(cut).Round(time.Millisecond))
	time.Sleep(time.Second)
	mon.stop()

	holder2 := faultLeaseHolder(t, env)
	if holder1 == "" || holder2 == "" || holder1 == holder2 {
		t.Errorf("Lease holder before the cut %q, after %q: want a change", holder1, holder2)
	}
	last1, first2 := mon.lastWrite(0), mon.firstWrite(1)
	switch {
	case first2.IsZero():
		t.Errorf("replica 2's ferry_apply_objects_total never grew")
	case !last1.Before(first2):
		t.Errorf("replica 1's ferry_apply_objects_total last grew at %s, after replica 2's first grew at %s: two writers",
			last1.Format("15:04:05.000"), first2.Format("15:04:05.000"))
	default:
		t.Logf("replica 1's applies counted last at %s (cut at %s), replica 2's first at %s: %s without a writer",
			last1.Format("15:04:05.000"), cut.Format("15:04:05.000"), first2.Format("15:04:05.000"), first2.Sub(last1).Round(time.Millisecond))
	}
	if lost, led := mon.leaderChange(0, 0), mon.leaderChange(1, 1); lost.IsZero() || !lost.Before(led) {
		t.Errorf("replica 1's ferry_leader went to 0 at %s, replica 2's to 1 at %s", lost.Format("15:04:05.000"), led.Format("15:04:05.000"))
	}
	stopped, leading := faultLogTime(t, r1.logs(), `msg="stopped leading"`), faultLogTime(t, r2.logs(), `msg=leading`)
	if !stopped.Before(leading) {
		t.Errorf("replica 1 logged it stopped leading at %s, replica 2 that it leads at %s", stopped.Format("15:04:05.000"), leading.Format("15:04:05.000"))
	} else {
		t.Logf("replica 1 stopped leading at %s, %s before replica 2 led (%s)", stopped.Format("15:04:05.000"), leading.Sub(stopped).Round(time.Millisecond), leading.Format("15:04:05.000"))
	}

	for _, w := range []*faultWatch{wa, wb} {
		w.stop()
		for _, v := range w.violations() {
			t.Error(v)
		}
		if n := len(w.withdrawals()); n > 0 {
			t.Errorf("cluster %s: a split went back a step %d times", w.cl, n)
		}
	}
	faultCheckSteps(t, state.NewKube(env.Clusters["a"].Client, "ferry-system"), migration, services, 2*time.Second)
	if err := r2.stop(); err != nil {
		t.Errorf("replica 2's exit after SIGTERM: %v", err)
	}
}

func faultLeaseHolder(t *testing.T, env *cluster.Env) string {
	t.Helper()
	l, err := env.Clusters["a"].Client.CoordinationV1().Leases("ferry-system").Get(t.Context(), "ferry", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Lease ferry-system/ferry: %v", err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// faultLogTime returns the time of the first text-log line containing sub.
func faultLogTime(t *testing.T, logs, sub string) time.Time {
	t.Helper()
	re := regexp.MustCompile(`time=(\S+)`)
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, sub) {
			if m := re.FindStringSubmatch(l); m != nil {
				if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
					return at
				}
			}
		}
	}
	t.Errorf("no log line with %s", sub)
	return time.Time{}
}

// replicaMonitor samples the replicas' ferry_apply_objects_total (all
// labels) and ferry_leader.
type replicaMonitor struct {
	ds   []*daemon
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	applies []float64
	first   []time.Time // first growth seen
	last    []time.Time // last growth seen
	leader  []float64
	changes [][]leaderSample
}

type leaderSample struct {
	v  float64
	at time.Time
}

func monitorReplicas(t *testing.T, ds ...*daemon) *replicaMonitor {
	m := &replicaMonitor{ds: ds, done: make(chan struct{}), applies: make([]float64, len(ds)),
		first: make([]time.Time, len(ds)), last: make([]time.Time, len(ds)), leader: make([]float64, len(ds)),
		changes: make([][]leaderSample, len(ds))}
	for i, d := range ds {
		m.applies[i] = d.faultMetric("ferry_apply_objects_total")
		m.leader[i] = d.faultMetric("ferry_leader")
	}
	m.wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
			for i, d := range ds {
				code, body := d.get("/metrics")
				if code != 200 {
					continue // exited, or not serving
				}
				a, l := faultSumMetric(body, "ferry_apply_objects_total"), faultSumMetric(body, "ferry_leader")
				now := time.Now()
				m.mu.Lock()
				if a > m.applies[i] {
					if m.first[i].IsZero() {
						m.first[i] = now
					}
					m.last[i] = now
					m.applies[i] = a
				}
				if l != m.leader[i] {
					m.changes[i] = append(m.changes[i], leaderSample{v: l, at: now})
					m.leader[i] = l
				}
				m.mu.Unlock()
			}
		}
	})
	t.Cleanup(m.stop)
	return m
}

func (m *replicaMonitor) stop() {
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
}

func (m *replicaMonitor) leaderOf(i int) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader[i]
}

func (m *replicaMonitor) firstWrite(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.first[i]
}

func (m *replicaMonitor) lastWrite(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last[i]
}

// leaderChange returns when replica i's ferry_leader first became v.
func (m *replicaMonitor) leaderChange(i int, v float64) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.changes[i] {
		if c.v == v {
			return c.at
		}
	}
	return time.Time{}
}

func faultSumMetric(body, name string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			f := strings.Fields(line)
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
