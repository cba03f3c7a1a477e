package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

// TestStatusApproveKubeStore: with --store kube the operator commands work
// on the ConfigMaps a daemon running in a cluster keeps, on a real API
// server: status shows the stored progress, approve records a request the
// daemon will find.
func TestStatusApproveKubeStore(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	stopClock(t, now)
	env := cluster.StartT(t, "home")
	home := env.Clusters["home"].Client
	if _, err := home.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ferry-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := state.NewKube(home, "ferry-system")
	p := plans.NewProgress(now.Add(-time.Hour))
	p.Step, p.Weight, p.State = 2, 25, plans.StateProgressing
	if _, err := st.Save(t.Context(), state.Change{Migration: "onprem-to-eks", Services: map[string]plans.Progress{"shop/cart": p}, Commit: "abc", At: now}); err != nil {
		t.Fatal(err)
	}
	kube := []string{"--plans", example, "--store", "kube", "--kubeconfig", env.Kubeconfig, "--home-context", "home", "--namespace", "ferry-system"}

	var out, errb bytes.Buffer
	if code := run(append([]string{"status", "onprem-to-eks"}, kube...), &out, &errb); code != ExitOK {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "shop/cart") || !strings.Contains(out.String(), "25%") {
		t.Errorf("status does not show the stored 25%% of shop/cart:\n%s", out.String())
	}

	out.Reset()
	errb.Reset()
	if code := run(append([]string{"approve", "onprem-to-eks/shop/cart", "--by", "alice"}, kube...), &out, &errb); code != ExitOK {
		t.Fatalf("approve: exit %d: %s", code, errb.String())
	}
	reqs, err := st.Pending(t.Context(), "onprem-to-eks")
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].By != "alice" {
		t.Errorf("pending requests in the kube store: %+v, want alice's approval", reqs)
	}
}
