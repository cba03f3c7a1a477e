package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/gitserver"
)

// The budgets of DESIGN.md and issue #7, as benchmarks of the ferry binary
// against real API servers and a real git http-backend. They report their
// figures with b.ReportMetric; ns/op means little. Run them with
//
//	go test ./test/e2e/ -run '^$' -bench . -benchtime 20x
//
// Each uses b.Loop, so the testing package calls it once per -count and
// the clusters start once.

// steadyEnv sets BenchmarkSteadyState's duration (a Go duration).
const steadyEnv = "FERRY_STEADY"

// budgetPlan is one migration of shop/web from a to b, already at 100%
// after its first promotion, whose Service settings give web's port.
func budgetPlan(migration string, port int) string {
	return fmt.Sprintf(`clusters: {a: {context: a}, b: {context: b}}
migrations:
  %s:
    from: a
    to: b
    provider: linkerd
    steps: [0, 100]
    soak: 1s
    window: {schedule: ["@every 1s"]}
    services:
      shop/web: {port: %d}
    waves:
      - name: first
        services: [shop/web]
`, migration, port)
}

// BenchmarkCommitToApplied measures the time from a commit pushed to the
// plan repository until both clusters show it: each iteration toggles the
// port of shop/web in the plan's service settings between 80 and 8080,
// which changes the port of the ferry-owned Service shop/web-local on a
// and on b, and polls both API servers every 20 ms until they serve it.
// With "webhook" the daemon polls Git every minute and a signed push hook
// follows each push; with "poll5s" it polls every 5 s and gets no hook,
// and each push waits a random part of the interval first, so that pushes
// fall uniformly over the poll cycle instead of just after a poll.
func BenchmarkCommitToApplied(b *testing.B) {
	env := cluster.StartT(b, "a", "b")
	env.Link(b)
	env.Serve(b, []string{"a", "b"}, "shop", "web")
	for _, v := range []struct {
		name     string
		interval time.Duration
		hook     bool
	}{{"webhook", time.Minute, true}, {"poll5s", 5 * time.Second, false}} {
		b.Run(v.name, func(b *testing.B) {
			const secret = "bench-secret"
			migration := "commit-" + strings.TrimSuffix(v.name, "5s")
			repo := gitserver.Start(b)
			port := 80
			repo.CommitPush("plan", map[string]string{"plan.yaml": budgetPlan(migration, port)})
			d := startDaemon(b, []string{"FERRY_WEBHOOK_SECRET=" + secret},
				"--url", repo.URL(), "--kubeconfig", env.Kubeconfig, "--state-dir", b.TempDir(),
				"--interval", v.interval.String())
			waitFor(b, "web reaches 100% on both clusters, web-local serves port 80", 60*time.Second, func() bool {
				return toWeight(b, env, "a", "web") == 100 && toWeight(b, env, "b", "web") == 100 &&
					localPort(b, env, "a") == 80 && localPort(b, env, "b") == 80
			})
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
			var lat []time.Duration
			for b.Loop() {
				if !v.hook {
					b.StopTimer()
					time.Sleep(time.Duration(rng.Int64N(int64(v.interval))))
					b.StartTimer()
				}
				port = 80 + 8080 - port
				repo.CommitPush(fmt.Sprintf("web on port %d", port), map[string]string{"plan.yaml": budgetPlan(migration, port)})
				pushed := time.Now()
				if v.hook {
					if c := d.hook(secret); c != http.StatusAccepted {
						b.Fatalf("webhook: %d, want 202", c)
					}
				}
				for localPort(b, env, "a") != port || localPort(b, env, "b") != port {
					if time.Since(pushed) > 3*v.interval+30*time.Second {
						b.Fatalf("port %d not applied on both clusters %s after the push:\n%s", port, time.Since(pushed).Round(time.Millisecond), d.logs())
					}
					time.Sleep(20 * time.Millisecond)
				}
				lat = append(lat, time.Since(pushed))
			}
			b.StopTimer()
			b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 95)), "p95-ms")
			b.ReportMetric(ms(slices.Max(lat)), "max-ms")
			b.Logf("%d commits, pushed → applied on a and b: %v", len(lat), roundAll(lat))
		})
	}
}

// localPort is the port of the ferry-owned Service shop/web-local in
// cluster cl; 0 while it does not exist.
func localPort(b testing.TB, env *cluster.Env, cl string) int {
	b.Helper()
	svc, err := env.Clusters[cl].Client.CoreV1().Services("shop").Get(b.Context(), "web-local", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0
	}
	if err != nil {
		b.Fatalf("cluster %s: %v", cl, err)
	}
	if len(svc.Spec.Ports) != 1 {
		b.Fatalf("cluster %s: Service shop/web-local has ports %v, want one", cl, svc.Spec.Ports)
	}
	return int(svc.Spec.Ports[0].Port)
}

// BenchmarkSteadyState runs the daemon, with the default poll interval of
// 10 s, against two clusters where its migration has completed, and
// measures, while nothing changes for FERRY_STEADY (30s unless set), the
// write requests the two API servers count in apiserver_request_total
// (verbs POST, PUT, PATCH, DELETE, DELETECOLLECTION, APPLY; server-side
// dry runs are counted apart, as they write nothing) and the CPU time the
// daemon used. It reports the raw count as writes.
//
// Besides ferry, the only writer is the API server itself: it renews its
// identity Lease in kube-system (label apiserver.kubernetes.io/identity)
// every 10 s, which the metric cannot tell apart from other Lease writes
// (it has no client or namespace label). So Lease writes are attributed by
// a watch of every Lease: changes to other Leases are ferry's. ferry-writes
// is the writes to anything but Leases plus those changes; any fails the
// benchmark, naming the resources. The harness runs no controller-manager,
// and without leader election and a home cluster ferry has no reason to
// write a Lease or an Event.
func BenchmarkSteadyState(b *testing.B) {
	steady := 30 * time.Second
	if s := os.Getenv(steadyEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a positive Go duration such as 5m", steadyEnv, s)
		}
		steady = d
	}
	env := cluster.StartT(b, "a", "b")
	env.Link(b)
	services := []string{"cart", "web", "api"}
	env.Serve(b, []string{"a", "b"}, "shop", services...)
	repo := gitserver.Start(b)
	repo.CommitPush("plans", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web, shop/api")})
	d := startDaemon(b, nil, "--url", repo.URL(), "--kubeconfig", env.Kubeconfig, "--state-dir", b.TempDir(), "--interval", "10s")
	waitFor(b, "every service reaches 100% on both clusters", 90*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, s := range services {
				if toWeight(b, env, cl, s) != 100 {
					return false
				}
			}
		}
		return true
	})
	// The last promotion's completion is saved and applied by the next
	// reconcile; let it and one poll go by.
	time.Sleep(12 * time.Second)

	leases := watchLeases(b, env)
	before, cpu0 := apiWrites(b, env), cpuSeconds(b, d.cmd.Process.Pid)
	deadline := time.Now().Add(steady)
	for b.Loop() {
		// The first iteration waits out the period, the others return at
		// once: one measurement per run, whatever -benchtime says.
		time.Sleep(time.Until(deadline))
	}
	after, cpu1 := apiWrites(b, env), cpuSeconds(b, d.cmd.Process.Pid)
	time.Sleep(time.Second) // the watch events of the last writes
	others, err := leases.stop()
	if err != nil {
		b.Fatal(err)
	}

	writes, dryRuns := diffWrites(before, after)
	ferry := map[string]int{}
	for k, n := range writes {
		if !strings.HasSuffix(k, " leases.coordination.k8s.io") {
			ferry[k] = n
		}
	}
	for k, n := range others {
		ferry[k] = n
	}
	// A Lease write that changed nothing sends no watch event: count as
	// ferry's any Lease write the watch did not see.
	own := leases.ownRenewals()
	for _, cl := range env.Names() {
		seen := own[cl]
		for k, n := range others {
			if strings.HasPrefix(k, cl+" ") {
				seen += n
			}
		}
		counted := 0
		for k, n := range writes {
			if strings.HasPrefix(k, cl+" ") && strings.HasSuffix(k, " leases.coordination.k8s.io") {
				counted += n
			}
		}
		if counted > seen {
			ferry[cl+" Lease writes the watch did not see"] = counted - seen
		}
	}
	b.ReportMetric(float64(total(writes)), "writes")
	b.ReportMetric(float64(total(ferry)), "ferry-writes")
	b.ReportMetric(float64(total(dryRuns)), "dry-runs")
	b.ReportMetric(cpu1-cpu0, "cpu-s")
	b.Logf("over %s: %d writes %v (the API servers' own identity Lease renewals: %v); %d server-side dry runs %v; %.2f CPU seconds",
		steady, total(writes), describeWrites(writes), own, total(dryRuns), describeWrites(dryRuns), cpu1-cpu0)
	if n := total(ferry); n != 0 {
		b.Fatalf("%d API writes by ferry in %s of steady state, want 0: %v\nferry's log:\n%s", n, steady, describeWrites(ferry), d.logs())
	}
}

// identityLabel marks the Lease an API server renews for its own identity.
const identityLabel = "apiserver.kubernetes.io/identity"

// leaseWatch counts the changes to Leases on every cluster.
type leaseWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	own    map[string]int // by cluster: the API server's identity Lease
	others map[string]int // by "cluster EVENT leases ns/name"
	err    error
}

func watchLeases(b testing.TB, env *cluster.Env) *leaseWatch {
	b.Helper()
	ctx, cancel := context.WithCancel(b.Context())
	lw := &leaseWatch{cancel: cancel, own: map[string]int{}, others: map[string]int{}}
	for _, cl := range env.Names() {
		ri := env.Clusters[cl].Client.CoordinationV1().Leases("")
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatalf("cluster %s: list Leases: %v", cl, err)
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			b.Fatalf("cluster %s: watch Leases: %v", cl, err)
		}
		lw.wg.Go(func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				l, ok := ev.Object.(*coordinationv1.Lease)
				if !ok {
					continue
				}
				lw.mu.Lock()
				if l.Namespace == "kube-system" && l.Labels[identityLabel] != "" && ev.Type == watch.Modified {
					lw.own[cl]++
				} else {
					lw.others[fmt.Sprintf("%s %s leases %s/%s", cl, ev.Type, l.Namespace, l.Name)]++
				}
				lw.mu.Unlock()
			}
			if ctx.Err() == nil {
				lw.mu.Lock()
				lw.err = errors.Join(lw.err, fmt.Errorf("cluster %s: the watch of Leases ended early", cl))
				lw.mu.Unlock()
			}
		})
	}
	return lw
}

// stop ends the watches and returns the changes to Leases other than the
// API servers' own; an error when a watch ended before.
func (lw *leaseWatch) stop() (map[string]int, error) {
	lw.cancel()
	lw.wg.Wait()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return maps.Clone(lw.others), lw.err
}

func (lw *leaseWatch) ownRenewals() map[string]int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return maps.Clone(lw.own)
}

// writeVerbs are the verbs of apiserver_request_total that write.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "DELETECOLLECTION": true, "APPLY": true}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// apiWrites reads apiserver_request_total from every cluster's /metrics
// and returns the write requests, keyed by "cluster verb resource
// [dry-run]".
func apiWrites(b testing.TB, env *cluster.Env) map[string]float64 {
	b.Helper()
	out := map[string]float64{}
	for _, cl := range env.Names() {
		raw, err := env.Clusters[cl].Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(b.Context())
		if err != nil {
			b.Fatalf("cluster %s: GET /metrics: %v", cl, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "apiserver_request_total{") {
				continue
			}
			end := strings.LastIndexByte(line, '}')
			labels := map[string]string{}
			for _, m := range labelRE.FindAllStringSubmatch(line[:end], -1) {
				labels[m[1]] = m[2]
			}
			if !writeVerbs[labels["verb"]] {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
			if err != nil {
				b.Fatalf("cluster %s: %q: %v", cl, line, err)
			}
			res := labels["resource"]
			if labels["group"] != "" {
				res += "." + labels["group"]
			}
			if labels["subresource"] != "" {
				res += "/" + labels["subresource"]
			}
			key := cl + " " + labels["verb"] + " " + res
			if labels["dry_run"] != "" {
				key += " dry-run"
			}
			out[key] += v
		}
		if err := sc.Err(); err != nil {
			b.Fatalf("cluster %s: /metrics: %v", cl, err)
		}
	}
	return out
}

// diffWrites splits the requests made between two readings into writes and
// server-side dry runs.
func diffWrites(before, after map[string]float64) (writes, dryRuns map[string]int) {
	writes, dryRuns = map[string]int{}, map[string]int{}
	for k, v := range after {
		n := int(v - before[k])
		if n == 0 {
			continue
		}
		if base, ok := strings.CutSuffix(k, " dry-run"); ok {
			dryRuns[base] += n
		} else {
			writes[k] += n
		}
	}
	return writes, dryRuns
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func describeWrites(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// cpuSeconds is the user and system CPU time of process pid, from
// /proc/<pid>/stat, in clock ticks of 1/100 s (USER_HZ on Linux).
func cpuSeconds(b testing.TB, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return float64(utime+stime) / 100
}

// BenchmarkRSS2000x4 starts the daemon in directory mode on a plan of
// 2,000 services × 4 clusters (two migrations of 2,000 services between
// different cluster pairs, as the renderer's benchmarks generate it) served
// by git http-backend, waits until the first render of every cluster is on
// disk, and reports the process's resident set (VmRSS) and its peak
// (VmHWM). DESIGN.md's budget is 150 MiB; it is reported, not enforced.
func BenchmarkRSS2000x4(b *testing.B) {
	repo := gitserver.Start(b)
	repo.CommitPush("2,000 services × 4 clusters", map[string]string{"plan.yaml": bigPlan(2000)})
	out := filepath.Join(b.TempDir(), "out")
	d := startDaemon(b, nil, "--url", repo.URL(), "--out", out, "--state-dir", b.TempDir(), "--interval", "10s")
	started := time.Now()
	clusters := []string{"dc1", "eks", "dc2", "gke"}
	waitFor(b, "the first render of every cluster is on disk", 5*time.Minute, func() bool {
		for _, c := range clusters {
			if _, err := os.Stat(filepath.Join(out, c)); err != nil {
				return false
			}
		}
		return true
	})
	b.Logf("first render of 4 clusters on disk %s after start", time.Since(started).Round(time.Millisecond))
	objects := 0
	for _, c := range clusters {
		objects += countObjects(b, filepath.Join(out, c))
	}
	var rss, hwm float64
	for b.Loop() {
		rss, hwm = procStatusMiB(b, d.cmd.Process.Pid, "VmRSS"), procStatusMiB(b, d.cmd.Process.Pid, "VmHWM")
	}
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(hwm, "hwm-MiB")
	b.ReportMetric(float64(objects), "objects")
	if hwm >= 150 {
		b.Logf("peak resident set %.1f MiB is over DESIGN.md's budget of 150 MiB", hwm)
	}
}

// countObjects counts the objects of a cluster's rendered manifests.yaml:
// its top-level kind fields.
func countObjects(b testing.TB, dir string) int {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "manifests.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.HasPrefix(line, "kind: ") {
			n++
		}
	}
	return n
}

// bigPlan is a YAML plan of two migrations, alpha (dc1 → eks, Linkerd)
// and beta (dc2 → gke, Istio ambient), of n services each in ten waves,
// spread over 37 namespaces, ports 80 to 82, every fifth with a target
// port and a pod selector: renderer.bigRepo as plan files. The window
// opens once a year, so nothing moves while the benchmark runs.
func bigPlan(n int) string {
	var sb strings.Builder
	sb.WriteString("clusters: {dc1: {}, eks: {}, dc2: {}, gke: {}}\nmigrations:\n")
	for i, m := range []struct{ name, from, to, provider string }{
		{"alpha", "dc1", "eks", "linkerd"}, {"beta", "dc2", "gke", "istio"},
	} {
		fmt.Fprintf(&sb, "  %s:\n    from: %s\n    to: %s\n    provider: %s\n", m.name, m.from, m.to, m.provider)
		sb.WriteString("    steps: [0, 5, 25, 50, 100]\n    window: {schedule: [\"0 0 1 1 *\"]}\n    services:\n")
		ref := func(j int) string { return fmt.Sprintf("team-%02d/svc-%d-%04d", j%37, i, j) }
		for j := range n {
			if j%5 == 0 {
				fmt.Fprintf(&sb, "      %s: {port: %d, targetPort: 8080, podSelector: {app: svc-%d-%04d, track: stable}}\n", ref(j), 80+j%3, i, j)
			} else {
				fmt.Fprintf(&sb, "      %s: {port: %d}\n", ref(j), 80+j%3)
			}
		}
		sb.WriteString("    waves:\n")
		for w := range 10 {
			fmt.Fprintf(&sb, "      - name: wave-%d\n        services:\n", w)
			for j := w; j < n; j += 10 {
				fmt.Fprintf(&sb, "          - %s\n", ref(j))
			}
		}
	}
	return sb.String()
}

// procStatusMiB reads a "kB" field of /proc/<pid>/status in MiB.
func procStatusMiB(b testing.TB, pid int, field string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			b.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
		}
		return kb / 1024
	}
	b.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// percentile is the p-th percentile of ds by the nearest-rank method.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
