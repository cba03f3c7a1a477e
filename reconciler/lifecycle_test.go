package reconciler_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/reconciler/gates"
	"github.com/ferry-dev/ferry/reconciler/source"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

// fixtures makes namespace shop with a Service and ready endpoints for
// each name in the given clusters, and the Linkerd Links between a and b.
func fixtures(t *testing.T, env *cluster.Env, clusters []string, services ...string) {
	t.Helper()
	env.Link(t)
	env.Serve(t, clusters, "shop", services...)
}

func clusterTarget(t *testing.T, env *cluster.Env, names ...string) *apply.Target {
	t.Helper()
	appliers := map[string]*apply.Applier{}
	for _, name := range names {
		a, err := apply.New(env.Clusters[name].Config, name, apply.Options{})
		if err != nil {
			t.Fatal(err)
		}
		appliers[name] = a
	}
	return apply.NewTarget(appliers)
}

// toWeight returns the percent the TrafficSplit shop/<svc> of cluster cl
// gives b, the migration's `to` side; -1 when there is no split.
func toWeight(t testing.TB, env *cluster.Env, cl, svc string) int64 {
	t.Helper()
	return env.MustToWeight(t, cl, "b", "shop", svc)
}

// loop is a reconciler on a fake clock that moves 10 s per Reconcile.
type loop struct {
	t    *testing.T
	r    *reconciler.Reconciler
	now  time.Time
	last map[string]plans.Plan
}

func newClusterLoop(t *testing.T, store reconciler.Store, src reconciler.Source, target reconciler.Target, ev *gates.Evaluator) *loop {
	l := &loop{t: t, now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	l.r = reconciler.New(reconciler.Config{
		Source: src, Store: store, Target: target, Gates: ev,
		Now:         func() time.Time { return l.now },
		OnReconcile: func(_ *plans.Repository, d map[string]plans.Plan) { l.last = d },
	})
	return l
}

func (l *loop) tick(n int) {
	l.t.Helper()
	for range n {
		if err := l.r.Reconcile(l.t.Context()); err != nil {
			l.t.Fatal(err)
		}
		l.now = l.now.Add(10 * time.Second)
	}
}

func (l *loop) decision(m, svc string) plans.Decision {
	l.t.Helper()
	p, ok := l.last[m]
	if !ok || p.Decision(svc) == nil {
		l.t.Fatalf("no decision for %s %s in the last reconcile", m, svc)
	}
	return *p.Decision(svc)
}

// TestPreflightGatesFirstStep: a migration whose target cluster lacks the
// plan's namespace fails preflight; nothing of it is applied anywhere and
// its service holds with the failure as the reason. Once the namespace
// and the service exist, it starts.
func TestPreflightGatesFirstStep(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a"}, "cart")
	_, src, store := newLoop(t, clusterPlan)
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.tick(3)
	d := l.decision("m", "shop/cart")
	if d.Progress.Step != 0 || !strings.Contains(d.Blocked, "preflight failed") || !strings.Contains(d.Blocked, "namespace shop does not exist") {
		t.Fatalf("step %d, blocked %q; want a hold at 0 on the failed preflight", d.Progress.Step, d.Blocked)
	}
	for _, cl := range []string{"a", "b"} {
		if w := toWeight(t, env, cl, "cart"); w != -1 {
			t.Errorf("cluster %s: a TrafficSplit exists before preflight passed", cl)
		}
		_, err := env.Clusters[cl].Client.CoreV1().ConfigMaps(apply.InventoryNamespace).Get(t.Context(), apply.InventoryName("m"), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("cluster %s: inventory of m: %v; want none", cl, err)
		}
	}
	h, err := store.History(t.Context(), "m", "shop/cart")
	if err != nil || !strings.Contains(eventsText(h), "preflight failed") {
		t.Errorf("history does not say why the service holds: %v\n%s", err, eventsText(h))
	}

	fixtures(t, env, []string{"b"}, "cart")
	l.now = l.now.Add(time.Minute) // the failed result is reused for a minute
	l.tick(8)
	if d := l.decision("m", "shop/cart"); d.Progress.Step != 2 {
		t.Fatalf("step %d after fixing the cluster, want 2 (100%%); blocked %q", d.Progress.Step, d.Blocked)
	}
	if w := toWeight(t, env, "a", "cart"); w != 100 {
		t.Errorf("cluster a sends %d%% to b, want 100", w)
	}
}

func eventsText(h []state.Event) string {
	var b strings.Builder
	for _, e := range h {
		b.WriteString(string(e.Kind) + " " + e.Reason + "\n")
	}
	return b.String()
}

const gatePlan = `
clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 25, 50, 100]
    soak: 10s
    window: {schedule: ["@every 10s"]}
    failureThreshold: 2
    onFailure: rollback
    gates:
      - name: smoke
        webhook: {url: "URL", timeout: 2s}
    waves:
      - name: first
        maxConcurrent: 2
        services: [shop/cart, shop/web]
`

// TestFailingGateRollsBackBothClusters: a webhook gate that starts failing
// mid-wave rolls every service of the wave back to 0% on both clusters at
// once, after failureThreshold consecutive failures, and nothing moves
// again on its own.
func TestFailingGateRollsBackBothClusters(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a", "b"}, "cart", "web")
	var failing atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "smoke test failed: 503 from /checkout", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer hook.Close()
	_, src, store := newLoop(t, strings.Replace(gatePlan, "URL", hook.URL, 1))
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), &gates.Evaluator{})
	for i := 0; i < 20 && l.decision2("m", "shop/cart").Progress.Weight < 50; i++ {
		l.tick(1)
	}
	if w := l.decision("m", "shop/cart").Progress.Weight; w != 50 {
		t.Fatalf("cart at %d%%, want 50 before the gate fails", w)
	}
	for _, cl := range []string{"a", "b"} {
		if w := toWeight(t, env, cl, "cart"); w != 50 {
			t.Fatalf("cluster %s sends %d%% of cart to b, want 50", cl, w)
		}
	}
	failing.Store(true)
	l.tick(6)
	for _, svc := range []string{"cart", "web"} {
		d := l.decision("m", "shop/"+svc)
		if d.Progress.Weight != 0 || d.Progress.State != plans.StateRolledBack {
			t.Errorf("%s: weight %d, state %s; want rolled back to 0 (blocked %q)", svc, d.Progress.Weight, d.Progress.State, d.Blocked)
		}
		for _, cl := range []string{"a", "b"} {
			if w := toWeight(t, env, cl, svc); w != 0 {
				t.Errorf("cluster %s: split %s gives b %d%%, want 0", cl, svc, w)
			}
		}
	}
	// Rolled back means frozen: with the gate passing again, nothing moves
	// until a person resumes.
	failing.Store(false)
	l.tick(4)
	if d := l.decision("m", "shop/cart"); d.Progress.Weight != 0 {
		t.Errorf("cart moved to %d%% by itself after the rollback", d.Progress.Weight)
	}
	h, _ := store.History(t.Context(), "m", "shop/cart")
	if !strings.Contains(eventsText(h), "rollback") {
		t.Errorf("history has no rollback:\n%s", eventsText(h))
	}
}

// decision2 is decision without failing when nothing was decided yet.
func (l *loop) decision2(m, svc string) plans.Decision {
	if p, ok := l.last[m]; ok && p.Decision(svc) != nil {
		return *p.Decision(svc)
	}
	return plans.Decision{}
}

const twoMigrations = `
clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 30s
    window: {schedule: ["@every 10s"]}
    waves:
      - name: first
        services: [shop/cart]
  n:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 30s
    window: {schedule: ["@every 10s"]}
    waves:
      - name: first
        maxConcurrent: 2
        services: [shop/web, shop/api]
`

// TestRemovalIsTrafficFirst: removing a whole migration, and a service of
// another, while traffic flows to them first sends that traffic back to
// 0% on every cluster (the split stays, at 0) and only then prunes their
// objects and the removed migration's inventory; what stays in the plans
// is left alone.
func TestRemovalIsTrafficFirst(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a", "b"}, "cart", "web", "api")
	repoDir, src, store := newLoop(t, twoMigrations)
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.tick(1)
	for _, s := range []struct{ m, svc string }{{"m", "cart"}, {"n", "web"}, {"n", "api"}} {
		if w := toWeight(t, env, "a", s.svc); w != 50 {
			t.Fatalf("%s at %d%% on a, want 50 before the removal", s.svc, w)
		}
	}
	// Remove migration m and service shop/api of n.
	next := twoMigrations[:strings.Index(twoMigrations, "  m:")] + twoMigrations[strings.Index(twoMigrations, "  n:"):]
	commit(t, repoDir, strings.Replace(next, "[shop/web, shop/api]", "[shop/web]", 1))

	l.tick(1)
	for _, svc := range []string{"cart", "api"} {
		for _, cl := range []string{"a", "b"} {
			if w := toWeight(t, env, cl, svc); w != 0 {
				t.Fatalf("first reconcile after the removal: cluster %s split %s gives b %d%%, want 0 (traffic first)", cl, svc, w)
			}
		}
	}
	if w := toWeight(t, env, "a", "web"); w < 50 {
		t.Fatalf("web, still in the plan, went back to %d%%", w)
	}
	l.tick(2)
	for _, svc := range []string{"cart", "api"} {
		for _, cl := range []string{"a", "b"} {
			if w := toWeight(t, env, cl, svc); w != -1 {
				t.Errorf("cluster %s: split %s still exists after its traffic went back", cl, svc)
			}
		}
	}
	for _, cl := range []string{"a", "b"} {
		_, err := env.Clusters[cl].Client.CoreV1().ConfigMaps(apply.InventoryNamespace).Get(t.Context(), apply.InventoryName("m"), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("cluster %s: inventory of the removed migration m: %v; want it gone", cl, err)
		}
		// The Services ferry merely routes for are never deleted.
		if _, err := env.Clusters[cl].Client.CoreV1().Services("shop").Get(t.Context(), "cart", metav1.GetOptions{}); err != nil {
			t.Errorf("cluster %s: Service shop/cart: %v", cl, err)
		}
	}
	l.tick(2)
	if w := toWeight(t, env, "a", "web"); w != 100 {
		t.Errorf("web at %d%%, want 100: the rest of the plans keeps moving", w)
	}
}

const selectorPlan = `
clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 10s
    window: {schedule: ["@every 10s"]}
    waves:
      - name: named
        services: [shop/web]
      - name: backends
        maxConcurrent: 5
        selector: {namespace: shop, matchLabels: {tier: backend}}
`

// TestWaveSelector: a wave's label selector picks the Services of the from
// cluster that carry the labels, skipping those another wave names; they
// move after the wave before, and a Service without the labels is left
// alone.
func TestWaveSelector(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a", "b"}, "web", "cart", "pricing", "search")
	for _, name := range []string{"web", "cart", "pricing"} { // search stays unlabelled
		patch := []byte(`{"metadata":{"labels":{"tier":"backend"}}}`)
		if _, err := env.Clusters["a"].Client.CoreV1().Services("shop").Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, src, store := newLoop(t, selectorPlan)
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.tick(12)
	for _, svc := range []string{"web", "cart", "pricing"} {
		if w := toWeight(t, env, "a", svc); w != 100 {
			t.Errorf("%s at %d%%, want 100", svc, w)
		}
	}
	if w := toWeight(t, env, "a", "search"); w != -1 {
		t.Errorf("search, which no selector picks, has a split (%d%%)", w)
	}
	d := l.decision("m", "shop/cart")
	if d.Wave != "backends" {
		t.Errorf("cart decided in wave %q, want backends", d.Wave)
	}
	h, err := store.History(t.Context(), "m", "shop/cart")
	if err != nil {
		t.Fatal(err)
	}
	web, _ := store.History(t.Context(), "m", "shop/web")
	firstPromote := func(h []state.Event) time.Time {
		for _, e := range h {
			if e.Kind == state.EventPromote {
				return e.At
			}
		}
		return time.Time{}
	}
	if c, w := firstPromote(h), firstPromote(web); c.IsZero() || !c.After(w) {
		t.Errorf("cart (wave backends) first moved at %s, web (wave named) at %s: the selected wave must follow", c, w)
	}
}

// TestRemovalSurvivesRestart: a commit removes a migration and a service
// while traffic flows to them, and ferry restarts before it ever saw that
// commit. The new process reads their definitions from the commit that
// last defined them (recorded with their progress) and still sends their
// traffic back to 0% before it prunes anything.
func TestRemovalSurvivesRestart(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a", "b"}, "cart", "web", "api")
	repoDir, stateDir := t.TempDir(), t.TempDir()
	git(t, repoDir, "init", "-q", "-b", "main")
	commit(t, repoDir, twoMigrations)
	store, err := state.NewBolt(stateDir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	newSource := func() *source.Source {
		src, err := source.New(source.Config{URL: "file://" + repoDir, Ref: source.Ref{Branch: "main"}, Interval: time.Second, Timeout: 30 * time.Second}, filepath.Join(stateDir, "source"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	src := newSource()
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.tick(1)
	for _, svc := range []string{"cart", "web", "api"} {
		if w := toWeight(t, env, "a", svc); w != 50 {
			t.Fatalf("%s at %d%% before the removal, want 50", svc, w)
		}
	}
	// ferry stops; the removal lands; ferry starts again.
	src.Close()
	next := twoMigrations[:strings.Index(twoMigrations, "  m:")] + twoMigrations[strings.Index(twoMigrations, "  n:"):]
	commit(t, repoDir, strings.Replace(next, "[shop/web, shop/api]", "[shop/web]", 1))
	src = newSource()
	defer src.Close()
	now := l.now
	l = newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.now = now

	l.tick(1)
	for _, svc := range []string{"cart", "api"} {
		for _, cl := range []string{"a", "b"} {
			if w := toWeight(t, env, cl, svc); w != 0 {
				t.Fatalf("first reconcile after the restart: cluster %s split %s gives b %d%%, want 0 (traffic first)", cl, svc, w)
			}
		}
	}
	l.tick(2)
	for _, svc := range []string{"cart", "api"} {
		for _, cl := range []string{"a", "b"} {
			if w := toWeight(t, env, cl, svc); w != -1 {
				t.Errorf("cluster %s: split %s still exists after its traffic went back", cl, svc)
			}
		}
	}
}

// TestConflictHoldsOnlyItsMigration: another field manager takes the
// weights of one migration's split; that migration's move stays pending
// (ferry does not take the field back), while the other migration's moves
// in the same reconcile complete.
func TestConflictHoldsOnlyItsMigration(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	fixtures(t, env, []string{"a", "b"}, "cart", "web", "api")
	_, src, store := newLoop(t, twoMigrations)
	l := newClusterLoop(t, store, src, clusterTarget(t, env, "a", "b"), nil)
	l.tick(1)
	intruder := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "cart", "namespace": "shop"},
		"spec": map[string]any{"service": "cart", "backends": []any{
			map[string]any{"service": "cart-local", "weight": int64(80)},
			map[string]any{"service": "cart-local-b", "weight": int64(20)},
		}},
	}}
	if _, err := env.Clusters["a"].Dynamic.Resource(cluster.TrafficSplits).Namespace("shop").Apply(t.Context(), "cart", intruder, metav1.ApplyOptions{FieldManager: "intruder", Force: true}); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		err := l.r.Reconcile(t.Context())
		if err == nil || !strings.Contains(err.Error(), "conflict") {
			t.Fatalf("reconcile with a conflicting field manager: %v, want the conflict reported", err)
		}
		l.now = l.now.Add(10 * time.Second)
	}
	m, _ := store.Load(t.Context(), "m")
	if p := m.Services["shop/cart"]; p.Weight != 50 || p.Pending == plans.NoPending {
		t.Errorf("cart: weight %d, pending %d; want its move to 100 pending at 50", p.Weight, p.Pending)
	}
	n, _ := store.Load(t.Context(), "n")
	for _, svc := range []string{"shop/web", "shop/api"} {
		if p := n.Services[svc]; p.Weight != 100 {
			t.Errorf("%s of migration n: weight %d, want 100: another migration's conflict must not hold it", svc, p.Weight)
		}
	}
	if w := toWeight(t, env, "a", "cart"); w != 20 {
		t.Errorf("cart's split gives b %d%%: ferry took the intruder's weights back", w)
	}
}
