package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/gitserver"
)

// faultHoldPlan is daemonPlan with an approval gate on the last step, so that
// services stop at 50% with traffic flowing to both sides.
func faultHoldPlan(services string, extra string) string {
	return strings.Replace(daemonPlan(services), "    waves:\n", "    gates: [{name: owner, approval: {}, steps: [100]}]\n"+extra+"    waves:\n", 1)
}

// TestFaultEmptyRender pushes, while two services carry 50% of their
// traffic on each side, a commit that removes every migration (the plan
// file keeps only its clusters: a wrong path, a bad merge).
//
// Nothing lost means: the empty commit is refused (the reconciler's
// refuseEmpty: an empty plan never retires migrations that carry
// traffic) — ferry_plan_valid 0, the log says why, /readyz still names
// the last good commit — and nothing is pruned or changed: every object
// ferry manages keeps its resourceVersion and both inventories keep every
// object. Then the explicit way is taken: rollback: true brings both
// services to 0% on both clusters, and only the commit removing the
// migration after that prunes its splits.
func TestFaultEmptyRender(t *testing.T) {
	t.Parallel()
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", "cart", "web")
	repo := gitserver.Start(t)
	good := repo.CommitPush("plans", map[string]string{"plan.yaml": faultHoldPlan("shop/cart, shop/web", "")})
	d := startDaemon(t, nil, "--url", repo.URL(), "--kubeconfig", env.Kubeconfig,
		"--state-dir", t.TempDir(), "--out", filepath.Join(t.TempDir(), "out"), "--interval", "300ms")
	waitFor(t, "cart and web at 50% on both clusters", 60*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, svc := range []string{"cart", "web"} {
				if toWeight(t, env, cl, svc) != 50 {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)
	before := resourceVersions(t, env)
	invBefore := map[string][]string{"a": faultInventory(t, env, "a", "m"), "b": faultInventory(t, env, "b", "m")}

	empty := repo.CommitPush("remove every migration", map[string]string{"plan.yaml": "clusters: {a: {context: a}, b: {context: b}}\n"})
	pushed := time.Now()
	waitFor(t, "the empty commit refused (ferry_plan_valid 0)", 30*time.Second, func() bool {
		return d.metric("ferry_plan_valid") == "ferry_plan_valid 0"
	})
	t.Logf("empty commit %s refused %s after the push", empty[:8], time.Since(pushed).Round(time.Millisecond))
	if !strings.Contains(d.logs(), "the plans hold no migration, but m still carry traffic") {
		t.Errorf("the log does not say why the empty commit was refused")
	}
	time.Sleep(3 * time.Second) // ten reconciles
	faultUnchanged(t, env, before, "after the empty commit")
	faultReadyOn(t, d, good, "after the empty commit")
	for _, cl := range []string{"a", "b"} {
		if got := faultInventory(t, env, cl, "m"); !slices.Equal(got, invBefore[cl]) {
			t.Errorf("cluster %s: inventory %v, was %v", cl, got, invBefore[cl])
		}
	}

	// The explicit way: roll back, then remove.
	repo.CommitPush("roll m back", map[string]string{"plan.yaml": faultHoldPlan("shop/cart, shop/web", "    rollback: true\n")})
	waitFor(t, "cart and web back at 0% on both clusters", 60*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, svc := range []string{"cart", "web"} {
				if toWeight(t, env, cl, svc) != 0 {
					return false
				}
			}
		}
		return true
	})
	repo.CommitPush("remove m", map[string]string{"plan.yaml": "clusters: {a: {context: a}, b: {context: b}}\n"})
	removed := time.Now()
	waitFor(t, "the splits pruned on both clusters", 60*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, svc := range []string{"cart", "web"} {
				if toWeight(t, env, cl, svc) != -1 {
					return false
				}
			}
		}
		return true
	})
	t.Logf("after rollback to 0%%, the removal pruned the splits in %s", time.Since(removed).Round(time.Millisecond))
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestFaultSSAConflict lets another field manager ("intruder", a
// server-side apply with force, as `kubectl apply --server-side
// --force-conflicts` does) take spec.backends of cart's TrafficSplit on
// cluster a, setting 20% for b, while cart is at 50% and about to move to
// 100%.
//
// Nothing lost means: the daemon (without --force-conflicts) does not
// take the field back — the intruder's weights stay, and the intruder
// alone owns spec.backends; cart's step is blocked: its move to 100% stays
// pending (written ahead, never counted as done); and it says so: the log
// names the object and the manager, and
// ferry_apply_objects_total{action="conflict"} counts the conflicts.
func TestFaultSSAConflict(t *testing.T) {
	t.Parallel()
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", "cart", "web")
	repo := t.TempDir()
	gitRepo(t, repo, strings.Replace(daemonPlan("shop/cart, shop/web"), "soak: 1s", "soak: 4s", 1))
	stateDir := t.TempDir()
	d := startDaemon(t, nil, "--url", "file://"+repo, "--branch", "main", "--kubeconfig", env.Kubeconfig,
		"--state-dir", stateDir, "--out", filepath.Join(t.TempDir(), "out"), "--interval", "300ms")
	waitFor(t, "cart at 50% on a", 60*time.Second, func() bool { return toWeight(t, env, "a", "cart") == 50 })

	splits := env.Clusters["a"].Dynamic.Resource(splitResource).Namespace("shop")
	live, err := splits.Get(t.Context(), "cart", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	backends, _, _ := unstructured.NestedSlice(live.Object, "spec", "backends")
	for _, b := range backends {
		m := b.(map[string]any)
		if strings.HasSuffix(m["service"].(string), "-b") {
			m["weight"] = int64(20)
		} else {
			m["weight"] = int64(80)
		}
	}
	intruder := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit",
		"metadata": map[string]any{"name": "cart", "namespace": "shop"},
		"spec":     map[string]any{"backends": backends},
	}}
	if _, err := splits.Apply(t.Context(), "cart", intruder, metav1.ApplyOptions{FieldManager: "intruder", Force: true}); err != nil {
		t.Fatalf("intruder's apply: %v", err)
	}
	took := time.Now()

	// The soak ends; the move to 100% is decided and cannot be applied.
	store, err := state.NewBolt(stateDir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The text log quotes the error: its quotes come escaped.
	const conflictMsg = `conflict with \"intruder\": .spec.backends`
	waitFor(t, "the conflict in the log", 30*time.Second, func() bool { return strings.Contains(d.logs(), conflictMsg) })
	t.Logf("conflict in the log %s after the intruder's apply", time.Since(took).Round(time.Millisecond))
	var pendingSince time.Time
	for time.Since(took) < 12*time.Second {
		p := faultProgress(t, store, "m").Services["shop/cart"]
		switch {
		case p.Weight > 50:
			t.Fatalf("cart counted done at %d%% while its split on a is the intruder's", p.Weight)
		case p.Pending != plans.NoPending && pendingSince.IsZero():
			pendingSince = time.Now()
		}
		if w := toWeight(t, env, "a", "cart"); w != 20 {
			t.Fatalf("cart's split on a gives b %d%%: the intruder's 20%% was taken back", w)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pendingSince.IsZero() {
		t.Errorf("cart's move to 100%% was never decided: the test did not reach a blocked step\n%s", describe(faultProgress(t, store, "m")))
	} else {
		t.Logf("cart's move to 100%% pending (blocked) for %s", time.Since(pendingSince).Round(time.Millisecond))
	}
	live, err = splits.Get(t.Context(), "cart", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range live.GetManagedFields() {
		if mf.Manager == "ferry" && mf.FieldsV1 != nil && strings.Contains(mf.FieldsV1.GetRawString(), `"f:backends"`) {
			t.Errorf("ferry owns spec.backends again: %s", mf.FieldsV1.GetRawString())
		}
	}
	logs := d.logs()
	i := strings.Index(logs, conflictMsg)
	line := logs[strings.LastIndex(logs[:i], "\n")+1:]
	line = line[:strings.Index(line, "\n")]
	if !strings.Contains(line, "TrafficSplit/shop/cart") {
		t.Errorf("the conflict's log line does not name the object:\n%s", line)
	}
	t.Logf("log: %.400s", line)
	if n := d.faultMetric("ferry_apply_objects_total", `action="conflict"`); n == 0 {
		// Counted only after a successful apply, a conflict (which fails
		// the apply) was never counted; fixed in 05d0088 (OnApply).
		t.Errorf("ferry_apply_objects_total{action=\"conflict\"} is 0 after %s of conflicts on every reconcile (the log has them):\n%s",
			time.Since(took).Round(time.Second), faultGrep(d.faultMetrics(), "ferry_apply_objects_total"))
	} else {
		t.Logf("ferry_apply_objects_total{action=\"conflict\"} %g", n)
	}
	out, _ := exec.Command(ferryBin, "status", "--plans", repo, "--state-dir", stateDir).CombinedOutput()
	t.Logf("ferry status:\n%s", out)
	if !strings.Contains(string(out), "last apply failed") || !strings.Contains(string(out), `conflict with "intruder"`) {
		t.Errorf("ferry status does not say the apply fails on the conflict")
	}
	web := faultProgress(t, store, "m").Services["shop/web"]
	t.Logf("web (no conflict) meanwhile: weight %d, pending %d", web.Weight, web.Pending)
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

func (d *daemon) faultMetrics() string {
	_, body := d.get("/metrics")
	return body
}

// faultGrep returns the lines of s that contain sub.
func faultGrep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
