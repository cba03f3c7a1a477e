package e2e

import (
	"maps"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/gitserver"
)

// faultMetric returns the sum of the samples of metric name whose line
// contains every label given ("action=\"conflict\""); 0 when there is none.
func (d *daemon) faultMetric(name string, labels ...string) float64 {
	_, body := d.get("/metrics")
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// faultUnchanged fails the test when an object ferry manages changed its
// resourceVersion, appeared or went away since before.
func faultUnchanged(t *testing.T, env *cluster.Env, before map[string]string, after string) {
	t.Helper()
	now := resourceVersions(t, env)
	for k, v := range before {
		if now[k] != v {
			t.Errorf("%s: %s changed: resourceVersion %s -> %q", after, k, v, now[k])
		}
	}
	for k := range now {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %s appeared", after, k)
		}
	}
}

// faultReadyOn checks that /readyz answers 200 naming revision, the commit in
// force.
func faultReadyOn(t *testing.T, d *daemon, revision, when string) {
	t.Helper()
	if c, body := d.get("/readyz"); c != http.StatusOK || !strings.Contains(body, revision) {
		t.Errorf("%s: /readyz %d %q, want 200 with the last good commit %s", when, c, strings.TrimSpace(body), revision)
	}
}

// TestFaultGitDownForcePushInvalidPlan takes the plan repository's server
// down while the daemon polls it every 300 ms, rewrites the branch
// meanwhile (a force-push of a valid plan that drops the commit in
// force), brings the server back, then pushes a plan that fails
// validation on top of the commit in force, and finally a valid one.
//
// Nothing lost means: through the outage, the rewrite and the invalid
// plan, the last good commit stays in force — no object ferry manages
// changes (every resourceVersion the same), /readyz answers 200 naming
// that commit, and each refusal is reported: failed polls in
// ferry_source_errors_total, the rewrite in the log (the source refuses a
// commit that does not descend from the last applied one, as
// reconciler/source documents: the daemon has no allowRewrite), the
// invalid plan with ferry_plan_valid 0 and the validation error in the
// log. A valid fast-forward commit afterwards is taken and applied.
func TestFaultGitDownForcePushInvalidPlan(t *testing.T) {
	t.Parallel()
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", "cart", "web", "api")
	repo := gitserver.Start(t)
	good := repo.CommitPush("plans", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web")})
	d := startDaemon(t, nil, "--url", repo.URL(), "--kubeconfig", env.Kubeconfig,
		"--state-dir", t.TempDir(), "--out", filepath.Join(t.TempDir(), "out"), "--interval", "300ms")
	waitFor(t, "cart and web reach 100% on both clusters", 60*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, svc := range []string{"cart", "web"} {
				if toWeight(t, env, cl, svc) != 100 {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // the completions settle
	before := resourceVersions(t, env)
	faultReadyOn(t, d, good, "before the outage")

	// 1. The server goes down.
	repo.Stop()
	errs0 := d.faultMetric("ferry_source_errors_total")
	down := time.Now()
	waitFor(t, "failed polls counted in ferry_source_errors_total", 30*time.Second, func() bool {
		return d.faultMetric("ferry_source_errors_total") >= errs0+5
	})
	t.Logf("git server down: %g failed polls counted in %s", d.faultMetric("ferry_source_errors_total")-errs0, time.Since(down).Round(time.Millisecond))
	if !strings.Contains(d.logs(), "connection refused") {
		t.Errorf("the log does not say the plan repository is unreachable")
	}
	faultReadyOn(t, d, good, "git server down")
	faultUnchanged(t, env, before, "git server down")

	// 2. Meanwhile the branch is rewritten: the commit in force is
	// replaced by another with a valid plan (api added), force-pushed.
	repo.Git(repo.Work(), "checkout", "-q", "--orphan", "rewritten")
	rewritten := repo.Commit("rewritten history", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web, shop/api")})
	repo.Git(repo.Work(), "branch", "-q", "-M", "rewritten", "main")
	repo.Push(true)
	repo.Restart()
	back := time.Now()
	waitFor(t, "the rewrite refused in the log", 30*time.Second, func() bool {
		return strings.Contains(d.logs(), "history rewritten: "+rewritten+" does not descend from the last applied commit "+good)
	})
	t.Logf("force-push refused %s after the server came back", time.Since(back).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // several polls and reconciles after the refusal
	faultReadyOn(t, d, good, "after the force-push")
	faultUnchanged(t, env, before, "after the force-push")
	if got := d.metric("ferry_plan_valid"); got != "ferry_plan_valid 0" {
		t.Errorf("after the refused force-push: %q, want ferry_plan_valid 0 (older plans in force)", got)
	}

	// 3. The author puts the branch back on the commit in force and
	// pushes a plan that fails validation on top of it.
	repo.Git(repo.Work(), "reset", "-q", "--hard", good)
	invalid := repo.Commit("broken steps", map[string]string{"plan.yaml": strings.Replace(daemonPlan("shop/cart, shop/web, shop/api"), "[0, 50, 100]", "[0, 100, 50]", 1)})
	repo.Push(true)
	pushed := time.Now()
	waitFor(t, "the invalid plan refused in the log", 30*time.Second, func() bool {
		return strings.Contains(d.logs(), "steps[2]: 50 is not greater than the previous step 100")
	})
	t.Logf("invalid plan %s refused %s after the push", invalid[:8], time.Since(pushed).Round(time.Millisecond))
	if got := d.metric("ferry_plan_valid"); got != "ferry_plan_valid 0" {
		t.Errorf("after the invalid plan: %q, want ferry_plan_valid 0", got)
	}
	time.Sleep(2 * time.Second)
	faultReadyOn(t, d, good, "after the invalid plan")
	faultUnchanged(t, env, before, "after the invalid plan")

	// 4. A valid commit on top is taken.
	fixed := repo.CommitPush("fix steps", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web, shop/api")})
	pushed = time.Now()
	waitFor(t, "api's split on both clusters", 30*time.Second, func() bool {
		return toWeight(t, env, "a", "api") >= 0 && toWeight(t, env, "b", "api") >= 0
	})
	t.Logf("valid commit %s applied on both clusters %s after the push", fixed[:8], time.Since(pushed).Round(time.Millisecond))
	waitFor(t, "ferry_plan_valid 1 and /readyz on the new commit", 10*time.Second, func() bool {
		c, body := d.get("/readyz")
		return d.metric("ferry_plan_valid") == "ferry_plan_valid 1" && c == http.StatusOK && strings.Contains(body, fixed)
	})
	after := resourceVersions(t, env)
	maps.DeleteFunc(after, func(k, _ string) bool { return strings.Contains(k, "api") || strings.Contains(k, "ConfigMap") })
	for k, v := range after {
		if before[k] != v {
			t.Errorf("after the fix: %s changed (resourceVersion %s -> %s): only api's objects and the inventories should", k, before[k], v)
		}
	}
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
