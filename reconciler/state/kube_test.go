package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

// TestKube runs the store tests against a real API server, each in its own
// namespace of one "home" cluster.
func TestKube(t *testing.T) {
	env := cluster.StartT(t, "home")
	home := env.Clusters["home"]
	n := 0
	namespace := func(t *testing.T) string {
		t.Helper()
		n++
		ns := fmt.Sprintf("ferry-state-%d", n)
		_, err := home.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	// Each store has its own client, as separate processes would.
	client := func(t *testing.T) kubernetes.Interface {
		t.Helper()
		c, err := kubernetes.NewForConfig(home.Config)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("round trip", func(t *testing.T) { testRoundTrip(t, state.NewKube(client(t), namespace(t))) })
	t.Run("conflict", func(t *testing.T) { testConflict(t, state.NewKube(client(t), namespace(t))) })
	t.Run("requests", func(t *testing.T) { testRequests(t, state.NewKube(client(t), namespace(t))) })
	t.Run("write-ahead resume", func(t *testing.T) {
		ns := namespace(t)
		testWriteAheadResume(t, state.NewKube(client(t), ns), func() state.Store { return state.NewKube(client(t), ns) })
	})
	t.Run("concurrent writers", func(t *testing.T) {
		ns := namespace(t)
		var stores []state.Store
		for range 3 {
			stores = append(stores, state.NewKube(client(t), ns))
		}
		testConcurrentWriters(t, stores, 8)
	})
	t.Run("stale resourceVersion", func(t *testing.T) {
		// Writers that loaded the same version save at the same instant:
		// they pass the version check on the same resourceVersion, and the
		// API server lets one update through. Exactly one save wins.
		ns := namespace(t)
		base := state.NewKube(client(t), ns)
		if _, err := base.Save(t.Context(), state.Change{Migration: "shop", Services: map[string]plans.Progress{}}); err != nil {
			t.Fatal(err)
		}
		for round := range 5 {
			s, err := base.Load(t.Context(), "shop")
			if err != nil {
				t.Fatal(err)
			}
			const writers = 6
			var wg sync.WaitGroup
			start := make(chan struct{})
			results := make([]error, writers)
			for i := range writers {
				st := state.NewKube(client(t), ns)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					p := plans.NewProgress(t0)
					p.Failures = i
					_, results[i] = st.Save(t.Context(), state.Change{Migration: "shop", Version: s.Version,
						Services: map[string]plans.Progress{"shop/db": p},
						Events:   []state.Event{{Service: "shop/db", Kind: state.EventGates, Reason: fmt.Sprint(i)}}})
				}()
			}
			close(start)
			wg.Wait()
			won := 0
			for _, err := range results {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, state.ErrConflict):
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d of %d writers saved from the same version, want 1", round, won, writers)
			}
			after, _ := base.Load(t.Context(), "shop")
			if after.Version != s.Version+1 {
				t.Errorf("round %d: version %d after %d", round, after.Version, s.Version)
			}
		}
		h, _ := base.History(t.Context(), "shop", "")
		if len(h) != 5 {
			t.Errorf("%d events recorded by 5 winning saves", len(h))
		}
	})
	t.Run("history archives", func(t *testing.T) {
		ns := namespace(t)
		st := state.NewKube(client(t), ns)
		st.ChunkSize = 1024
		ctx := t.Context()
		for i := range 60 {
			ev := state.Event{At: t0, Service: fmt.Sprintf("shop/svc-%d", i%3), Kind: state.EventWait, Reason: strings.Repeat("x", 100) + fmt.Sprint(i)}
			if _, err := st.Save(ctx, state.Change{Migration: "shop", Events: []state.Event{ev}}); err != nil {
				t.Fatal(err)
			}
		}
		h, err := st.History(ctx, "shop", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 60 {
			t.Fatalf("%d events, want 60", len(h))
		}
		for i, e := range h {
			if e.Seq != uint64(i+1) || !strings.HasSuffix(e.Reason, fmt.Sprint(i)) {
				t.Fatalf("event %d: seq %d reason ...%s", i, e.Seq, e.Reason[len(e.Reason)-3:])
			}
		}
		h, _ = st.History(ctx, "shop", "shop/svc-1")
		if len(h) != 20 {
			t.Errorf("%d events of shop/svc-1, want 20", len(h))
		}
		list, err := home.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: state.LabelPart + "=history"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) < 3 {
			t.Errorf("%d history archives for 60 events of ~150 bytes in 1 KiB chunks", len(list.Items))
		}
		for _, cm := range list.Items {
			if cm.Annotations[state.AnnotationMigration] != "shop" || cm.Labels[state.LabelManagedBy] != "ferry" {
				t.Errorf("archive %s: labels %v annotations %v", cm.Name, cm.Labels, cm.Annotations)
			}
		}
	})
	t.Run("odd migration names", func(t *testing.T) {
		ns := namespace(t)
		st := state.NewKube(client(t), ns)
		for _, m := range []string{"Shop_EU", "shop-eu", strings.Repeat("long-name-", 10)} {
			if _, err := st.Save(t.Context(), state.Change{Migration: m, Services: map[string]plans.Progress{"a/b": plans.NewProgress(t0)}}); err != nil {
				t.Fatalf("%s: %v", m, err)
			}
		}
		for _, m := range []string{"Shop_EU", "shop-eu"} {
			s, err := st.Load(t.Context(), m)
			if err != nil || s.Version != 1 {
				t.Errorf("%s: version %d, %v", m, s.Version, err)
			}
		}
	})
	t.Run("no namespace", func(t *testing.T) {
		st := state.NewKube(client(t), "does-not-exist")
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := st.Save(ctx, state.Change{Migration: "shop", Services: map[string]plans.Progress{}}); err == nil {
			t.Error("saved into a namespace that does not exist")
		}
	})
}

func TestConfigMapName(t *testing.T) {
	for in, want := range map[string]string{
		"shop":    "ferry-shop",
		"Shop_EU": "ferry-shop-eu-",
	} {
		if got := state.ConfigMapName(in); !strings.HasPrefix(got, want) || in == "shop" && got != want {
			t.Errorf("ConfigMapName(%q) = %q, want %q…", in, got, want)
		}
	}
	if a, b := state.ConfigMapName("Shop_EU"), state.ConfigMapName("shop-eu"); a == b {
		t.Errorf("two migrations share ConfigMap %s", a)
	}
	if got := state.ConfigMapName(strings.Repeat("x", 300)); len(got) > 63 {
		t.Errorf("ConfigMapName of a long name: %d characters", len(got))
	}
}
