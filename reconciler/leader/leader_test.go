package leader_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/reconciler/leader"
	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/netcut"
)

// Short timings, so that a takeover takes seconds. The Lease records whole
// seconds, so LeaseDuration cannot go below one.
const (
	leaseDuration = 2 * time.Second
	renewDeadline = 1 * time.Second
	retryPeriod   = 200 * time.Millisecond
)

func TestNewRefusesUnsafeTimings(t *testing.T) {
	client := fake.NewClientset()
	for _, tc := range []struct {
		name         string
		lease, renew time.Duration
		retry        time.Duration
		want         string
	}{
		{"fraction of a second", 2500 * time.Millisecond, time.Second, 200 * time.Millisecond, "whole number of seconds"},
		{"renew deadline not shorter", 2 * time.Second, 2 * time.Second, 200 * time.Millisecond, "not less than lease duration"},
		{"retry too slow", 2 * time.Second, time.Second, 900 * time.Millisecond, "retry period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := leader.New(leader.Config{Client: client, LeaseDuration: tc.lease, RenewDeadline: tc.renew, RetryPeriod: tc.retry})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := leader.New(leader.Config{Client: client}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
	if a, b := leader.NewIdentity(), leader.NewIdentity(); a == b || a == "" {
		t.Errorf("NewIdentity gave %q and %q, want two different identities", a, b)
	}
}

// TestElection runs electors against a real API server, each scenario on
// its own Lease in its own namespace.
func TestElection(t *testing.T) {
	env := cluster.StartT(t, "home")
	home := env.Clusters["home"]

	t.Run("one leader, clean handover", func(t *testing.T) {
		ns := namespace(t, home.Client, "handover")
		tl := &timeline{}
		a := start(t, tl, "a", home.Client, ns)
		b := start(t, tl, "b", home.Client, ns)

		first := tl.waitLeader(t, "", 10*time.Second)
		// Several lease durations: the other must not get in.
		time.Sleep(3 * leaseDuration)
		if got := tl.leaders(); len(got) != 1 {
			t.Fatalf("leaders so far %v, want only %s", got, first)
		}
		cur, other := a, b
		if first == "b" {
			cur, other = b, a
		}
		if !cur.e.Leading() || other.e.Leading() {
			t.Fatalf("Leading: %s=%v %s=%v, want only %s", cur.name, cur.e.Leading(), other.name, other.e.Leading(), cur.name)
		}
		holder := leaseHolder(t, home.Client, ns)
		if holder != cur.name {
			t.Errorf("lease holder %q, want %q", holder, cur.name)
		}

		stopped := time.Now()
		cur.stop(t)
		if cur.e.Leading() {
			t.Error("Leading after Run returned")
		}
		second := tl.waitLeader(t, first, 2*leaseDuration)
		if second != other.name {
			t.Fatalf("new leader %s, want %s", second, other.name)
		}
		// The Lease was released, so the other did not wait for it to
		// expire.
		if took := tl.started(second).Sub(stopped); took > leaseDuration {
			t.Errorf("takeover took %s after the leader stopped, want less than the lease duration %s", took, leaseDuration)
		}
		tl.checkNoOverlap(t)
		other.stop(t)
	})

	// A leader that takes longer than a lease duration to finish after
	// its context was cancelled keeps the Lease renewed until it returned.
	t.Run("slow shutdown keeps the lease", func(t *testing.T) {
		ns := namespace(t, home.Client, "slow")
		tl := &timeline{}
		a := startLinger(t, tl, "a", home.Client, ns, 2*leaseDuration)
		if got := tl.waitLeader(t, "", 10*time.Second); got != "a" {
			t.Fatalf("leader %s, want a", got)
		}
		b := start(t, tl, "b", home.Client, ns)
		a.cancel()
		if got := tl.waitLeader(t, "a", 4*leaseDuration); got != "b" {
			t.Fatalf("new leader %s, want b", got)
		}
		if !tl.ended("a").Before(tl.started("b")) {
			t.Errorf("a's lead returned %s after b started", tl.ended("a").Sub(tl.started("b")))
		}
		if b.sawOtherLeading() {
			t.Error("a's fence was open when b started leading")
		}
		tl.checkNoOverlap(t)
		a.stop(t)
		b.stop(t)
	})

	// The leader's API access is cut by closing the only way to the API
	// server; the other replica must take over, and not before the first
	// stopped.
	t.Run("network cut", func(t *testing.T) {
		ns := namespace(t, home.Client, "netcut")
		p := netcut.New(t, home.Config.Host)
		cfg := rest.CopyConfig(home.Config)
		cfg.Host = "https://" + p.Addr()
		cfg.Timeout = 2 * time.Second
		takeover(t, home.Client, ns, kubernetes.NewForConfigOrDie(cfg), p.Cut)
	})

	// The leader's rights on Leases are revoked.
	t.Run("RBAC revoked", func(t *testing.T) {
		ns := namespace(t, home.Client, "revoked")
		cfg, err := home.NewUser("ferry-replica-a")
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "ferry-leader", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
				Verbs: []string{"get", "create", "update"},
			}},
		}
		if _, err := home.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "ferry-leader", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "ferry-leader"},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "ferry-replica-a"}},
		}
		if _, err := home.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		revoke := func() {
			if err := home.Client.RbacV1().RoleBindings(ns).Delete(ctx, "ferry-leader", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		takeover(t, home.Client, ns, kubernetes.NewForConfigOrDie(cfg), revoke)
	})
}

// takeover starts replica a with clientA, waits until it leads, starts b,
// cuts a's access with cut, and checks that a's fence closed and its lead
// function returned before b started leading, and that b took over in
// about a lease duration.
func takeover(t *testing.T, admin kubernetes.Interface, ns string, clientA kubernetes.Interface, cut func()) {
	tl := &timeline{}
	a := start(t, tl, "a", clientA, ns)
	if got := tl.waitLeader(t, "", 10*time.Second); got != "a" {
		t.Fatalf("leader %s, want a", got)
	}
	b := start(t, tl, "b", admin, ns)
	time.Sleep(2 * leaseDuration)
	if got := tl.leaders(); len(got) != 1 || b.e.Leading() {
		t.Fatalf("leaders %v before the cut, want only a", got)
	}
	if !a.e.Leading() {
		t.Fatal("a's fence is closed before the cut")
	}

	// Watch a's fence from now on.
	closed := make(chan time.Time, 1)
	go func() {
		for a.e.Leading() {
			time.Sleep(time.Millisecond)
		}
		closed <- time.Now()
	}()
	cutAt := time.Now()
	cut()

	if got := tl.waitLeader(t, "a", 4*leaseDuration); got != "b" {
		t.Fatalf("leader after the cut %s, want b", got)
	}
	bStarted := tl.started("b")
	fenceClosed := <-closed
	t.Logf("after the cut: a's fence closed in %s, a's lead returned in %s, b led in %s",
		fenceClosed.Sub(cutAt), tl.ended("a").Sub(cutAt), bStarted.Sub(cutAt))
	if !fenceClosed.Before(bStarted) {
		t.Errorf("a's fence closed %s after b started leading", fenceClosed.Sub(bStarted))
	}
	if !tl.ended("a").Before(bStarted) {
		t.Errorf("a's lead returned %s after b started leading", tl.ended("a").Sub(bStarted))
	}
	// The fence closes at most RenewDeadline after the cut (plus
	// scheduling noise).
	if late := fenceClosed.Sub(cutAt); late > renewDeadline+500*time.Millisecond {
		t.Errorf("a's fence closed %s after the cut, want about the renew deadline %s", late, renewDeadline)
	}
	if took := bStarted.Sub(cutAt); took > 2*leaseDuration {
		t.Errorf("b took over %s after the cut, want about the lease duration %s", took, leaseDuration)
	}
	if b.sawOtherLeading() {
		t.Error("a's fence was open when b started leading")
	}
	tl.checkNoOverlap(t)
	if holder := leaseHolder(t, admin, ns); holder != "b" {
		t.Errorf("lease holder %q, want b", holder)
	}
	a.stop(t)
	b.stop(t)
}

// replica is one elector running in the background.
type replica struct {
	name   string
	e      *leader.Elector
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed

	mu       sync.Mutex
	otherOn  bool
	otherFns []func() bool
}

func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("%s: Run = %v", r.name, r.err)
		}
	case <-time.After(3 * leaseDuration):
		t.Fatalf("%s: Run did not return after its context was cancelled", r.name)
	}
}

func (r *replica) sawOtherLeading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.otherOn
}

// start runs a replica named name on ns's Lease until the test ends.
// Replicas started on one timeline watch each other's fences: when one
// starts leading, it records whether another's Leading said true.
func start(t *testing.T, tl *timeline, name string, client kubernetes.Interface, ns string) *replica {
	t.Helper()
	return startLinger(t, tl, name, client, ns, 0)
}

// startLinger is start with a lead function that keeps running for linger
// after its context is cancelled, as a daemon finishing an apply does, and
// records whether its fence stayed open meanwhile.
func startLinger(t *testing.T, tl *timeline, name string, client kubernetes.Interface, ns string, linger time.Duration) *replica {
	t.Helper()
	e, err := leader.New(leader.Config{
		Client: client, Namespace: ns, Identity: name,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", name),
		OnChange: func(leading bool) { tl.gauge(name, leading) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{name: name, e: e, cancel: cancel, done: make(chan struct{})}
	tl.mu.Lock()
	others := tl.replicas
	tl.replicas = append(tl.replicas, r)
	tl.mu.Unlock()
	for _, o := range others {
		o.mu.Lock()
		o.otherFns = append(o.otherFns, e.Leading)
		o.mu.Unlock()
		r.otherFns = append(r.otherFns, o.e.Leading)
	}
	lead := func(ctx context.Context) {
		r.mu.Lock()
		for _, f := range r.otherFns {
			r.otherOn = r.otherOn || f()
		}
		r.mu.Unlock()
		tl.begin(name, e.Leading())
		<-ctx.Done()
		if linger > 0 {
			time.Sleep(linger)
			if !e.Leading() {
				tl.problem(name + ": fence closed while lead finished its work")
			}
		}
		tl.end(name)
	}
	go func() {
		defer close(r.done)
		r.err = e.Run(ctx, lead)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// timeline records when each replica's lead function ran.
type timeline struct {
	mu       sync.Mutex
	spans    []span
	replicas []*replica
	problems []string
	gauges   map[string]bool
}

type span struct {
	who        string
	start, end time.Time // end is zero while running
}

func (tl *timeline) begin(who string, fenceOpen bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if !fenceOpen {
		tl.problems = append(tl.problems, who+": lead started with its fence closed")
	}
	tl.spans = append(tl.spans, span{who: who, start: time.Now()})
}

func (tl *timeline) problem(p string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.problems = append(tl.problems, p)
}

func (tl *timeline) end(who string) {
	now := time.Now()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for i := len(tl.spans) - 1; i >= 0; i-- {
		if tl.spans[i].who == who && tl.spans[i].end.IsZero() {
			tl.spans[i].end = now
			return
		}
	}
	tl.problems = append(tl.problems, who+": lead ended without having started")
}

// gauge checks OnChange's calls: true and false alternate, and come
// outside lead.
func (tl *timeline) gauge(who string, leading bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.gauges == nil {
		tl.gauges = map[string]bool{}
	}
	if tl.gauges[who] == leading {
		tl.problems = append(tl.problems, who+": OnChange called twice with the same value")
	}
	tl.gauges[who] = leading
	for _, s := range tl.spans {
		if s.who == who && s.end.IsZero() {
			tl.problems = append(tl.problems, who+": OnChange called while lead runs")
		}
	}
}

func (tl *timeline) leaders() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []string
	for _, s := range tl.spans {
		out = append(out, s.who)
	}
	return out
}

// waitLeader waits until a replica other than not starts leading, and
// returns it.
func (tl *timeline) waitLeader(t *testing.T, not string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		tl.mu.Lock()
		for _, s := range tl.spans {
			if s.who != not && s.end.IsZero() {
				tl.mu.Unlock()
				return s.who
			}
		}
		tl.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no replica other than %q led within %s; spans %v", not, within, tl.leaders())
	return ""
}

func (tl *timeline) started(who string) time.Time {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for i := len(tl.spans) - 1; i >= 0; i-- {
		if tl.spans[i].who == who {
			return tl.spans[i].start
		}
	}
	return time.Time{}
}

// ended returns when who's first lead returned, far in the future when it
// has not.
func (tl *timeline) ended(who string) time.Time {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, s := range tl.spans {
		if s.who == who && !s.end.IsZero() {
			return s.end
		}
	}
	return time.Now().Add(time.Hour)
}

// checkNoOverlap checks that no two lead functions ran at once.
func (tl *timeline) checkNoOverlap(t *testing.T) {
	t.Helper()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, p := range tl.problems {
		t.Error(p)
	}
	for i, s := range tl.spans {
		for _, o := range tl.spans[i+1:] {
			// Spans are appended in start order: o started after s.
			if s.end.IsZero() || !s.end.Before(o.start) {
				t.Errorf("%s led from %s to %v and %s from %s: overlap", s.who, s.start.Format(time.StampMicro), s.end.Format(time.StampMicro), o.who, o.start.Format(time.StampMicro))
			}
		}
	}
}

func namespace(t *testing.T, client kubernetes.Interface, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func leaseHolder(t *testing.T, client kubernetes.Interface, ns string) string {
	t.Helper()
	l, err := client.CoordinationV1().Leases(ns).Get(t.Context(), leader.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
