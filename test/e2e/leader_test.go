package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/gitserver"
)

// The leader scenario: two services move from a to b in ten steps of 10,
// one step per 2 s soak at most, so the wave takes about 20 s plus the
// takeover.
const (
	leaderNamespace = "ferry-system"
	leaderLease     = "ferry"
	leaderMigration = "m"
	// takeoverWithin bounds the standby's takeover after the leader died:
	// the lease duration (15 s by default) plus the standby's retry
	// period and a margin for a busy machine.
	takeoverWithin = 30 * time.Second
)

var leaderServices = []string{"cart", "web"}

func leaderPlan() string {
	return `clusters: {a: {context: a}, b: {context: b}}
migrations:
  ` + leaderMigration + `:
    from: a
    to: b
    provider: linkerd
    steps: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    soak: 2s
    window: {schedule: ["@every 1s"]}
    waves:
      - name: all
        maxConcurrent: 2
        services: [shop/cart, shop/web]
`
}

// TestLeaderElection runs two replicas of `ferry run --leader-elect
// --store kube` against two real API servers (issue #7). Only the replica
// holding the Lease ferry-system/ferry writes: the standby reports
// ferry_leader 0 and applies no object while the leader's applies grow.
// The leader is SIGKILLed mid-wave; the standby takes the Lease over within
// the lease duration and finishes the wave on both clusters, and the
// history in the kube store shows every step promoted once, in order. A
// watch of every TrafficSplit version on both clusters checks that no
// write ever skipped a step or broke the sum of 100 (two writers racing
// would show as a step back or a double step).
func TestLeaderElection(t *testing.T) {
	t.Parallel()
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", leaderServices...)
	home := env.Clusters["a"].Client
	_, err := home.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaderNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	repo := gitserver.Start(t)
	repo.CommitPush("plan", map[string]string{"plan.yaml": leaderPlan()})
	sw := watchSplits(t, env, leaderServices)

	start := func() *daemon {
		return startDaemon(t, nil, "--leader-elect", "--store", "kube", "--home-context", "a",
			"--namespace", leaderNamespace, "--kubeconfig", env.Kubeconfig, "--url", repo.URL(),
			"--state-dir", t.TempDir(), "--interval", "2s")
	}
	replicas := []*daemon{start(), start()}

	var lead, standby *daemon
	waitFor(t, "one replica reports ferry_leader 1", 60*time.Second, func() bool {
		for i, d := range replicas {
			if metricSum(t, d, "ferry_leader") == 1 {
				lead, standby = d, replicas[1-i]
				return true
			}
		}
		return false
	})
	leadID := identity(t, lead)
	if h := leaseHolder(t, env); h != leadID {
		t.Fatalf("Lease %s/%s is held by %q, the replica reporting ferry_leader 1 is %q", leaderNamespace, leaderLease, h, leadID)
	}

	// Let the wave go a few steps: the leader applies, the standby not,
	// at every look.
	appliedAtElection := metricSum(t, lead, "ferry_apply_objects_total")
	looks := 0
	waitFor(t, "the wave reaches 30% on both clusters", 60*time.Second, func() bool {
		looks++
		for _, check := range []struct {
			name string
			want float64
		}{{"ferry_leader", 0}, {"ferry_apply_objects_total", 0}} {
			if got := metricSum(t, standby, check.name); got != check.want {
				t.Fatalf("standby (%s): %s = %v, want %v while %s leads (look %d)", identity(t, standby), check.name, got, check.want, leadID, looks)
			}
		}
		return minWeight(t, env) >= 30
	})
	if got := metricSum(t, lead, "ferry_apply_objects_total"); got <= appliedAtElection {
		t.Errorf("the leader's ferry_apply_objects_total went from %v to %v over three promotions, want it to grow", appliedAtElection, got)
	}
	if both := strings.Contains(standby.logs(), "msg=leading"); both {
		t.Errorf("the standby logged that it leads while the other held the Lease")
	}
	if t.Failed() {
		t.FailNow()
	}

	// Kill the leader mid-wave, as a node failure would: it cannot
	// release the Lease, so the standby waits for it to expire.
	before := minWeight(t, env)
	lead.kill()
	killed := time.Now()
	waitFor(t, "the standby reports ferry_leader 1", takeoverWithin, func() bool {
		return metricSum(t, standby, "ferry_leader") == 1
	})
	takeover := time.Since(killed)
	t.Logf("leader killed at %d%%; standby leads after %s", before, takeover.Round(time.Millisecond))
	if h, id := leaseHolder(t, env), identity(t, standby); h != id {
		t.Errorf("after the takeover, Lease %s/%s is held by %q, want the new leader %q", leaderNamespace, leaderLease, h, id)
	}

	waitFor(t, "every service reaches 100% on both clusters", 90*time.Second, func() bool {
		return minWeight(t, env) == 100
	})
	if got := metricSum(t, standby, "ferry_apply_objects_total"); got == 0 {
		t.Errorf("the new leader finished the wave with ferry_apply_objects_total 0")
	}

	// Invariant 2, from the kube store's history: one promotion per step,
	// in order, none repeated or skipped, across the two leaders.
	store := state.NewKube(home, leaderNamespace)
	var want []string
	for w := 0; w < 100; w += 10 {
		want = append(want, fmt.Sprintf("%d→%d", w, w+10))
	}
	for _, s := range leaderServices {
		ref := "shop/" + s
		h, err := store.History(t.Context(), leaderMigration, ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range h {
			if e.Service != ref {
				continue
			}
			switch e.Kind {
			case state.EventPromote:
				got = append(got, fmt.Sprintf("%d→%d", e.From, e.To))
			case state.EventRollback, state.EventRetire, state.EventRemap:
				t.Errorf("%s: unexpected %s event: %s", ref, e.Kind, e.Reason)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: promotions in the kube store\n\t%s\nwant one per step, none repeated or skipped:\n\t%s", ref, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	sw.stop()
	for _, v := range sw.violations() {
		t.Error(v)
	}
	if err := standby.stop(); err != nil {
		t.Errorf("new leader's exit after SIGTERM: %v, want 0", err)
	}
}

// minWeight is the least weight any leader-test split on either cluster
// gives b; -1 while a split is missing.
func minWeight(t *testing.T, env *cluster.Env) int64 {
	t.Helper()
	least := int64(100)
	for _, cl := range []string{"a", "b"} {
		for _, s := range leaderServices {
			least = min(least, toWeight(t, env, cl, s))
		}
	}
	return least
}

// leaseHolder returns the holder identity of the leader Lease in a.
func leaseHolder(t *testing.T, env *cluster.Env) string {
	t.Helper()
	l, err := env.Clusters["a"].Client.CoordinationV1().Leases(leaderNamespace).Get(t.Context(), leaderLease, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Lease %s/%s: %v", leaderNamespace, leaderLease, err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

var identityRE = regexp.MustCompile(`\bidentity=(\S+)`)

// identity is the Lease identity a replica logs with its leader election
// messages.
func identity(t *testing.T, d *daemon) string {
	t.Helper()
	var id string
	waitFor(t, "the replica logs its Lease identity", 30*time.Second, func() bool {
		m := identityRE.FindStringSubmatch(d.logs())
		if m != nil {
			id = strings.Trim(m[1], `"`)
		}
		return m != nil
	})
	return id
}

// metricSum is the sum of a metric's samples over all their labels, from
// the daemon's /metrics; the test fails when the endpoint does not answer
// or the metric is not there.
func metricSum(t testing.TB, d *daemon, name string) float64 {
	t.Helper()
	code, body := d.get("/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if !found && name != "ferry_apply_objects_total" {
		// A counter vector without samples is absent, not 0.
		t.Fatalf("no metric %s in /metrics", name)
	}
	return sum
}
