package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

// The fault scenarios of issue #9 (RELIABILITY.md): the daemon as a real
// process against real API servers, a real git server and a real
// Prometheus, with one part failing at a time. Each test says what
// "nothing lost" means for its fault and checks DESIGN.md's invariants
// after it.

// faultServices returns n service names.
func faultServices(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("svc%d", i)
	}
	return s
}

// faultProgress reads the progress of migration m while a daemon may run
// (the store opens the file per operation).
func faultProgress(t *testing.T, store *state.Bolt, m string) state.Snapshot {
	t.Helper()
	snap, err := store.Load(t.Context(), m)
	if err != nil {
		t.Fatalf("read progress: %v", err)
	}
	return snap
}

// TestFaultAPIServerStoppedMidApply kills cluster b's kube-apiserver
// right after a promotion shows on cluster a (the clusters are applied
// concurrently, so b is in the middle of taking the same step), keeps it
// down for a few seconds and starts it again, at three points of a
// migration of 20 services in steps of 10.
//
// Nothing lost means: a step is counted as done only when every cluster
// holds it — a service's stored step advances during the outage only to
// a weight b's etcd already held when its API server died, and a move
// cut by the outage stays pending (held, not dropped: b's readiness is
// unknown, not false) and is completed after the restart with b holding
// the weight; nothing is pruned on either cluster (no split is ever
// deleted, both inventories keep every split); every version of every
// split, on a and on b (replayed from etcd after the restart), sums to
// 100 and moves up one step at a time — a never goes back because of b's
// outage; one promotion per step, no rollback; both clusters converge to
// 100% on b.
func TestFaultAPIServerStoppedMidApply(t *testing.T) {
	t.Parallel()
	const (
		migration = "m"
		outage    = 3 * time.Second
	)
	services := faultServices(20)
	env := cluster.StartT(t, "a", "b")
	serveShop(t, env, services)
	repo := t.TempDir()
	gitRepo(t, repo, crashPlan(services))
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	wa, wb := watchFault(t, env, "a", 10), watchFault(t, env, "b", 10)
	d := startDaemon(t, nil, "--url", "file://"+repo, "--branch", "main", "--kubeconfig", env.Kubeconfig,
		"--state-dir", stateDir, "--interval", "300ms", "--out", filepath.Join(dir, "out"))
	store, err := state.NewBolt(stateDir, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := env.Clusters["b"]

	type completion struct {
		ref    string
		weight int
		rv     int64 // b's etcd revision at the kill
		target int64
	}
	var (
		start     = time.Now()
		duringOut []completion // steps completed while b was down
		cutMoves  int          // moves in flight at the kill, b lacking their weight
		dropped   []string     // moves whose intent was dropped during an outage
		held      []string     // moves cut by an outage, pending at its end
	)
	for _, target := range []int64{30, 60, 90} {
		wa.drain()
		c := wa.waitFor(t, target, 60*time.Second)
		b.Stop(t)
		down := time.Now()
		rev := b.EtcdRevision(t)
		atStop := faultProgress(t, store, migration)
		last := atStop
		for time.Since(down) < outage {
			time.Sleep(100 * time.Millisecond)
			now := faultProgress(t, store, migration)
			for ref, p := range now.Services {
				was := last.Services[ref]
				if p.Step != was.Step {
					duringOut = append(duringOut, completion{ref: ref, weight: p.Weight, rv: rev, target: target})
				}
				if was.Pending != plans.NoPending && p.Pending == plans.NoPending && p.Step == was.Step {
					dropped = append(dropped, fmt.Sprintf("%s (to step %d, outage at %d%%)", ref, was.Pending, target))
				}
			}
			last = now
		}
		for ref, p := range atStop.Services {
			if p.Pending != plans.NoPending && !wb.heldBy(strings.TrimPrefix(ref, "shop/"), int64(p.PendingWeight), rev) {
				cutMoves++
			}
		}
		held = held[:0]
		for ref, p := range last.Services {
			if p.Pending != plans.NoPending {
				held = append(held, ref)
			}
		}
		b.Start(t)
		up := time.Now()
		// The held moves complete once b is back, with b holding them.
		waitFor(t, "the moves held through the outage complete", 30*time.Second, func() bool {
			now := faultProgress(t, store, migration)
			for _, ref := range held {
				if now.Services[ref].Pending != plans.NoPending {
					return false
				}
			}
			for _, ref := range held {
				p := now.Services[ref]
				if w, err := clusterToWeight(t.Context(), env, "b", strings.TrimPrefix(ref, "shop/")); err != nil {
					t.Error(err)
				} else if w < int64(p.Weight) {
					t.Errorf("outage at %d%%: %s counted done at %d%% after the restart, b's split gives b %d%%", target, ref, p.Weight, w)
				}
			}
			return true
		})
		t.Logf("outage at %d%%: %d moves pending through the outage completed %s after the restart", target, len(held), time.Since(up).Round(time.Millisecond))
		t.Logf("outage at %d%%: b killed %s after a's split %s moved to %d%%, down %s (etcd revision %d)",
			target, down.Sub(c.at).Round(time.Millisecond), c.service, c.weight, up.Sub(down).Round(time.Millisecond), rev)
	}

	converged := func() bool {
		if !finished(faultProgress(t, store, migration), len(services)) {
			return false
		}
		for _, s := range services {
			if wa.weight(s) != 100 || wb.weight(s) != 100 {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(90 * time.Second); !converged(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			var seen []string
			for _, s := range services {
				seen = append(seen, fmt.Sprintf("%s a:%d b:%d", s, wa.weight(s), wb.weight(s)))
			}
			t.Fatalf("not at 100%% on both clusters 90 s after the last outage; stored:\n%s\nwatched: %s\nviolations: %v %v",
				describe(faultProgress(t, store, migration)), strings.Join(seen, ", "), wa.violations(), wb.violations())
		}
	}
	t.Logf("every service at 100%% on both clusters %s after the start; %d moves in flight cut by the outages (b lacking the weight), %d steps completed during an outage (b held them)",
		time.Since(start).Round(time.Millisecond), cutMoves, len(duringOut))
	for _, m := range dropped {
		t.Errorf("the move of %s was dropped while b was unreachable, not held", m)
	}
	if cutMoves == 0 {
		t.Errorf("no outage caught a move in flight that b had not taken yet: the fault this test claims to inject never happened")
	}
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}

	// A step counted done while b was down: b must have held it already.
	for _, c := range duringOut {
		if !wb.heldBy(strings.TrimPrefix(c.ref, "shop/"), int64(c.weight), c.rv) {
			t.Errorf("outage at %d%%: %s counted done at %d%% while b was down, and b's etcd (revision %d) never held that weight",
				c.target, c.ref, c.weight, c.rv)
		}
	}
	faultCheckSteps(t, store, migration, services, crashSoak)
	for _, w := range []*faultWatch{wa, wb} {
		w.stop()
		for _, v := range w.violations() {
			t.Error(v)
		}
	}
	for _, w := range []*faultWatch{wa, wb} {
		for _, c := range w.withdrawals() {
			t.Errorf("cluster %s: split shop/%s went back to %d%% at %s: an outage of b stepped traffic back", w.cl, c.service, c.weight, c.at.Format("15:04:05.000"))
		}
	}
	// No prune: both inventories still list every split.
	for _, cl := range []string{"a", "b"} {
		inv := faultInventory(t, env, cl, migration)
		for _, s := range services {
			if !slices.Contains(inv, "TrafficSplit/shop/"+s) {
				t.Errorf("cluster %s: the inventory of %s lacks TrafficSplit shop/%s: %v", cl, migration, s, inv)
			}
		}
	}
}

// faultCheckSteps checks invariant 2 on the stored history of every
// service: one promotion per step of 10, in order, none repeated or
// skipped, each at least soak after the one before, and no rollback.
func faultCheckSteps(t *testing.T, store state.History, migration string, services []string, soak time.Duration) {
	t.Helper()
	var want []string
	for w := 0; w < 100; w += 10 {
		want = append(want, fmt.Sprintf("%d→%d", w, w+10))
	}
	for _, s := range services {
		ref := "shop/" + s
		h, err := store.History(t.Context(), migration, ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		var at []time.Time
		for _, e := range h {
			if e.Service != ref {
				continue
			}
			switch e.Kind {
			case state.EventPromote:
				got = append(got, fmt.Sprintf("%d→%d", e.From, e.To))
				at = append(at, e.At)
			case state.EventRollback, state.EventRetire, state.EventRemap:
				t.Errorf("%s: unexpected %s event: %s", ref, e.Kind, e.Reason)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: promotions\n\t%s\nwant one per step, none repeated or skipped:\n\t%s", ref, strings.Join(got, " "), strings.Join(want, " "))
		}
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < soak {
				t.Errorf("%s: promotion %s came %s after %s, before the %s soak ended", ref, got[i], gap, got[i-1], soak)
			}
		}
	}
}

// faultInventory lists the objects of migration's inventory ConfigMap in
// cluster cl as "Kind/namespace/name", sorted.
func faultInventory(t *testing.T, env *cluster.Env, cl, migration string) []string {
	t.Helper()
	cm, err := env.Clusters[cl].Client.CoreV1().ConfigMaps("ferry-system").Get(t.Context(), "ferry-inventory-"+migration, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("cluster %s: inventory of %s: %v", cl, migration, err)
	}
	var entries []struct{ Kind, Namespace, Name string }
	if err := json.Unmarshal([]byte(cm.Data["objects"]), &entries); err != nil {
		t.Fatalf("cluster %s: inventory of %s: %v", cl, migration, err)
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Kind + "/" + e.Namespace + "/" + e.Name
	}
	slices.Sort(out)
	return out
}
