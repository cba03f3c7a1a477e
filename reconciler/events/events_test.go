package events_test

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/events"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/test/cluster"
)

var at = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// got is what a test compares of a posted Event.
type got struct {
	Type, Reason, Action, Note string
	Regarding                  string
	Controller, Instance       string
	Series                     int32
}

func list(t *testing.T, client kubernetes.Interface, ns string) []got {
	t.Helper()
	l, err := client.EventsV1().Events(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(l.Items, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	var out []got
	for _, e := range l.Items {
		g := got{Type: e.Type, Reason: e.Reason, Action: e.Action, Note: e.Note,
			Regarding:  e.Regarding.Kind + "/" + e.Regarding.Namespace + "/" + e.Regarding.Name,
			Controller: e.ReportingController, Instance: e.ReportingInstance}
		if e.Series != nil {
			g.Series = e.Series.Count
		}
		out = append(out, g)
	}
	return out
}

func namespace(t *testing.T, client kubernetes.Interface, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestRecorder(t *testing.T) {
	env := cluster.StartT(t, "home")
	client := env.Clusters["home"].Client

	t.Run("promotion and rollback", func(t *testing.T) {
		ns := namespace(t, client, "promote")
		rec := events.New(client, ns, "replica-1", logger(t))
		evs := []state.Event{
			{At: at, Migration: "shop", Wave: "first", Service: "shop/checkout", Kind: state.EventGates,
				Reason: "pass: soak", Gates: []plans.GateResult{{Gate: "soak", Verdict: "pass"}}},
			{At: at, Migration: "shop", Wave: "first", Service: "shop/checkout", Kind: state.EventPromote,
				Reason: "step 1 to 2", From: 5, To: 25, Commit: "0123456789abcdef0123", Actor: plans.EngineActor},
			{At: at, Migration: "shop", Wave: "first", Service: "shop/cart", Kind: state.EventRollback,
				Reason: "gate error-rate: 7.5% > 1%", From: 25, To: 5, Commit: "0123456789abcdef0123", Actor: plans.EngineActor},
		}
		if err := rec.Record(t.Context(), "shop", evs); err != nil {
			t.Fatal(err)
		}
		cm := "ConfigMap/" + ns + "/ferry-migration.shop"
		want := []got{{
			Type: "Normal", Reason: "Promoted", Action: "Promote",
			Note:      "service shop/checkout (wave first): promoted step 1 to 2, weight 5 to 25 (commit 0123456789ab)",
			Regarding: cm, Controller: "ferry", Instance: "replica-1",
		}, {
			Type: "Warning", Reason: "RolledBack", Action: "Rollback",
			Note:      "service shop/cart (wave first): rolled back, weight 25 to 5: gate error-rate: 7.5% > 1% (commit 0123456789ab)",
			Regarding: cm, Controller: "ferry", Instance: "replica-1",
		}}
		if diff := cmp.Diff(want, list(t, client, ns)); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}

		// The Events regard the migration's ConfigMap, by UID.
		c, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), events.ConfigMapName("shop"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Labels[events.LabelManagedBy] != "ferry" || c.Annotations[events.AnnotationMigration] != "shop" || !strings.Contains(c.Data["description"], "shop") {
			t.Errorf("configmap labels %v, annotations %v, data %v", c.Labels, c.Annotations, c.Data)
		}
		l, err := client.EventsV1().Events(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.Items {
			if e.Regarding.UID != c.UID || e.Regarding.APIVersion != "v1" {
				t.Errorf("event %s regards %+v, want the ConfigMap of UID %s", e.Name, e.Regarding, c.UID)
			}
		}

		// Drift, as the applier reports it.
		if err := rec.Drift(t.Context(), "shop", "west", []string{"split.smi-spec.io/TrafficSplit/shop/checkout"}); err != nil {
			t.Fatal(err)
		}
		gotAll := list(t, client, ns)
		wantDrift := got{Type: "Warning", Reason: "Drift", Action: "Restore",
			Note:      "cluster west: restored 1 object(s) changed outside ferry: split.smi-spec.io/TrafficSplit/shop/checkout",
			Regarding: cm, Controller: "ferry", Instance: "replica-1"}
		if len(gotAll) != 3 {
			t.Fatalf("%d events after drift, want 3: %v", len(gotAll), gotAll)
		}
		if diff := cmp.Diff(wantDrift, gotAll[2]); diff != "" {
			t.Errorf("drift event (-want +got):\n%s", diff)
		}
	})

	t.Run("identical burst posts one event", func(t *testing.T) {
		ns := namespace(t, client, "burst")
		rec := events.New(client, ns, "replica-1", logger(t))
		hold := state.Event{At: at, Migration: "shop", Service: "shop/checkout", Kind: state.EventHold, Reason: "gate latency: no data"}
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Go(func() { errs <- rec.Record(t.Context(), "shop", []state.Event{hold}) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		// Another migration's identical event is its own.
		if err := rec.Record(t.Context(), "payments", []state.Event{hold}); err != nil {
			t.Fatal(err)
		}
		gotAll := list(t, client, ns)
		var regards []string
		for _, g := range gotAll {
			if g.Reason != "Held" || g.Type != "Warning" || g.Note != "service shop/checkout: held: gate latency: no data" {
				t.Errorf("event %+v", g)
			}
			regards = append(regards, g.Regarding)
		}
		slices.Sort(regards)
		want := []string{"ConfigMap/burst/ferry-migration.payments", "ConfigMap/burst/ferry-migration.shop"}
		if diff := cmp.Diff(want, regards); diff != "" {
			t.Errorf("events regard (-want +got):\n%s", diff)
		}
	})

	t.Run("series after the window", func(t *testing.T) {
		ns := namespace(t, client, "series")
		rec := events.New(client, ns, "replica-1", logger(t))
		now := time.Now()
		var mu sync.Mutex
		rec.SetNow(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

		drift := func() {
			t.Helper()
			if err := rec.Drift(t.Context(), "shop", "east", []string{"/Service/shop/checkout"}); err != nil {
				t.Fatal(err)
			}
		}
		drift()
		advance(30 * time.Second)
		drift() // coalesced: not written
		if g := list(t, client, ns); len(g) != 1 || g[0].Series != 0 {
			t.Fatalf("events within the window: %+v, want one without series", g)
		}
		advance(31 * time.Second)
		drift() // after the window: the series of the same Event
		if g := list(t, client, ns); len(g) != 1 || g[0].Series != 3 {
			t.Fatalf("events after the window: %+v, want one with a series of 3", g)
		}
		// A different note is a different Event.
		if err := rec.Drift(t.Context(), "shop", "west", []string{"/Service/shop/checkout"}); err != nil {
			t.Fatal(err)
		}
		if g := list(t, client, ns); len(g) != 2 {
			t.Fatalf("events: %+v, want two", g)
		}
	})

	t.Run("long notes fit", func(t *testing.T) {
		ns := namespace(t, client, "long")
		rec := events.New(client, ns, strings.Repeat("x", 300), logger(t))
		var objs []string
		for i := range 100 {
			objs = append(objs, fmt.Sprintf("gateway.networking.k8s.io/HTTPRoute/shop/route-%03d", i))
		}
		if err := rec.Drift(t.Context(), "shop", "east", objs); err != nil {
			t.Fatal(err)
		}
		hold := state.Event{Migration: "shop", Service: "shop/checkout", Kind: state.EventHold, Reason: strings.Repeat("é", 2000)}
		if err := rec.Record(t.Context(), "shop", []state.Event{hold}); err != nil {
			t.Fatal(err)
		}
		g := list(t, client, ns)
		if len(g) != 2 {
			t.Fatalf("events: %+v, want two", g)
		}
		if !strings.HasSuffix(g[0].Note, " more") || len(g[0].Note) > 1024 {
			t.Errorf("drift note of %d bytes: %q", len(g[0].Note), g[0].Note)
		}
		if !strings.HasSuffix(g[1].Note, "…") || len(g[1].Note) > 1024 {
			t.Errorf("hold note of %d bytes ends %q", len(g[1].Note), g[1].Note[len(g[1].Note)-10:])
		}
	})

	t.Run("errors are returned", func(t *testing.T) {
		// No such namespace: the ConfigMap cannot be created.
		rec := events.New(client, "missing", "replica-1", logger(t))
		err := rec.Record(t.Context(), "shop", []state.Event{{Kind: state.EventPromote, Reason: "step 0 to 1", To: 5}})
		if err == nil || !strings.Contains(err.Error(), "migration shop") {
			t.Errorf("Record = %v, want an error about migration shop", err)
		}
	})
}

// TestKinds lists which history events become Events, and how.
func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		ev           state.Event
		typ, reason  string
		noteContains string
	}{
		{state.Event{Kind: state.EventPromote, Reason: "step 0 to 1", To: 5}, "Normal", "Promoted", "promoted step 0 to 1, weight 0 to 5"},
		{state.Event{Kind: state.EventComplete, Reason: "soaked at weight 100"}, "Normal", "Completed", "completed: soaked at weight 100"},
		{state.Event{Kind: state.EventApprove, Actor: "alice"}, "Normal", "Approved", "approved by alice"},
		{state.Event{Kind: state.EventRequest, Actor: "alice", Reason: "approve wave first step 2"}, "Normal", "Requested", "request by alice: approve wave first step 2"},
		{state.Event{Kind: state.EventPause, Reason: "paused in plan"}, "Normal", "Paused", "paused: paused in plan"},
		{state.Event{Kind: state.EventResume}, "Normal", "Resumed", "resumed"},
		{state.Event{Kind: state.EventRemap, Reason: "steps edited: weight 5 is now step 1 (weight 10)"}, "Normal", "StepsEdited", "steps edited"},
		{state.Event{Kind: state.EventForget, Reason: "removed"}, "Normal", "Removed", "no longer in the plan: removed"},
		{state.Event{Kind: state.EventHold, Reason: "gate x: fail"}, "Warning", "Held", "held: gate x: fail"},
		{state.Event{Kind: state.EventRollback, From: 50, To: 25, Reason: "asked"}, "Warning", "RolledBack", "rolled back, weight 50 to 25: asked"},
		{state.Event{Kind: state.EventRetire, From: 5, To: 0, Reason: "retired"}, "Warning", "Retired", "retired, weight 5 to 0: retired"},
		{state.Event{Kind: state.EventGates}, "", "", ""},
		{state.Event{Kind: state.EventWait}, "", "", ""},
	} {
		t.Run(string(tc.ev.Kind), func(t *testing.T) {
			typ, reason, note, ok := events.Translate(tc.ev)
			if ok != (tc.reason != "") {
				t.Fatalf("posted = %v, want %v", ok, tc.reason != "")
			}
			if typ != tc.typ || reason != tc.reason || !strings.Contains(note, tc.noteContains) {
				t.Errorf("got %s %s %q, want %s %s with %q", typ, reason, note, tc.typ, tc.reason, tc.noteContains)
			}
		})
	}
}
