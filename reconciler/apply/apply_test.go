package apply_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/cluster"
)

const mig = "onprem-to-eks"

var tsGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}

func render(t *testing.T, dir string, steps plans.Steps) (*plans.Repository, *renderer.Result) {
	t.Helper()
	repo, err := plans.Load(os.DirFS(dir))
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	res, err := renderer.Render(repo, steps)
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	return repo, res
}

func mustNamespace(t testing.TB, c kubernetes.Interface, ns string) {
	t.Helper()
	_, err := c.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
}

func mustService(t *testing.T, c kubernetes.Interface, ns, name string, labels map[string]string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080}},
		},
	}
	_, err := c.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{FieldManager: "owner"})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create Service %s/%s: %v", ns, name, err)
	}
}

// versions returns the resourceVersion of every rendered object.
func versions(t *testing.T, env *cluster.Env, name string, objs []renderer.Object) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		gvr := tsGVR
		if o.Kind == "Service" {
			gvr = corev1.SchemeGroupVersion.WithResource("services")
		}
		u, err := env.Clusters[name].Dynamic.Resource(gvr).Namespace(o.Namespace).Get(t.Context(), o.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get %s %s/%s: %v", o.Kind, o.Namespace, o.Name, err)
		}
		out[o.Kind+"/"+o.Name] = u.GetResourceVersion()
	}
	return out
}

func weights(t *testing.T, env *cluster.Env, name, ns, split string) []int64 {
	t.Helper()
	u, err := env.Clusters[name].Dynamic.Resource(tsGVR).Namespace(ns).Get(t.Context(), split, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get TrafficSplit %s/%s: %v", ns, split, err)
	}
	bs, _, _ := unstructured.NestedSlice(u.Object, "spec", "backends")
	var ws []int64
	for _, b := range bs {
		w, _, _ := unstructured.NestedInt64(b.(map[string]any), "weight")
		ws = append(ws, w)
	}
	return ws
}

func newApplier(t *testing.T, env *cluster.Env, name string, opts apply.Options) *apply.Applier {
	t.Helper()
	a, err := apply.New(env.Clusters[name].Config, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func without(objs []renderer.Object, service string) []renderer.Object {
	return slices.DeleteFunc(slices.Clone(objs), func(o renderer.Object) bool { return o.Service == service })
}

func TestApplyRealClusters(t *testing.T) {
	env := cluster.StartT(t, "onprem", "eks")
	_, res := render(t, "../../examples/linkerd-eks", plans.Steps{})
	services := map[string]bool{}
	for _, c := range res.Clusters {
		for _, o := range c.Objects {
			services[o.Service] = true
		}
	}
	for _, name := range env.Names() {
		mustNamespace(t, env.Clusters[name].Client, "shop")
		for s := range services {
			ns, n, _ := strings.Cut(s, "/")
			mustService(t, env.Clusters[name].Client, ns, n, nil)
		}
	}

	t.Run("apply then steady state", func(t *testing.T) {
		for _, name := range env.Names() {
			a := newApplier(t, env, name, apply.Options{})
			objs := res.Cluster(name).Objects
			cs, err := a.Apply(t.Context(), mig, objs)
			if err != nil {
				t.Fatalf("%s: apply: %v", name, err)
			}
			if got := cs.Count(apply.ActionCreated); got != len(objs) {
				t.Errorf("%s: created %d, want %d: %+v", name, got, len(objs), cs)
			}
			before := versions(t, env, name, objs)
			invBefore, err := env.Clusters[name].Client.CoreV1().ConfigMaps(apply.InventoryNamespace).Get(t.Context(), apply.InventoryName(mig), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s: inventory: %v", name, err)
			}
			cs, err = a.Apply(t.Context(), mig, objs)
			if err != nil {
				t.Fatalf("%s: re-apply: %v", name, err)
			}
			if got := cs.Count(apply.ActionUnchanged); got != len(objs) {
				t.Errorf("%s: unchanged %d, want %d: %+v", name, got, len(objs), cs)
			}
			after := versions(t, env, name, objs)
			for k, v := range before {
				if after[k] != v {
					t.Errorf("%s: %s: resourceVersion %s → %s on a steady-state apply", name, k, v, after[k])
				}
			}
			invAfter, _ := env.Clusters[name].Client.CoreV1().ConfigMaps(apply.InventoryNamespace).Get(t.Context(), apply.InventoryName(mig), metav1.GetOptions{})
			if invAfter.ResourceVersion != invBefore.ResourceVersion {
				t.Errorf("%s: inventory rewritten on a steady-state apply", name)
			}
		}
	})

	t.Run("plan change is configured without drift", func(t *testing.T) {
		_, res2 := render(t, "../../examples/linkerd-eks", plans.Steps{{Migration: mig, Service: "shop/cart"}: 2})
		a := newApplier(t, env, "eks", apply.Options{})
		cs, err := a.Apply(t.Context(), mig, res2.Cluster("eks").Objects)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := cs.Find(apply.ObjectID{Group: "split.smi-spec.io", Kind: "TrafficSplit", Namespace: "shop", Name: "cart"})
		if c.Action != apply.ActionConfigured || c.Drift {
			t.Errorf("cart split: %+v, want configured without drift", c)
		}
		if got := weights(t, env, "eks", "shop", "cart"); !slices.Equal(got, []int64{25, 75}) {
			t.Errorf("weights %v, want [25 75]", got)
		}
		if cs.Count(apply.ActionConfigured) != 1 {
			t.Errorf("configured %d objects, want 1: %+v", cs.Count(apply.ActionConfigured), cs)
		}
		// Back to step 0 for the following subtests.
		if _, err := a.Apply(t.Context(), mig, res.Cluster("eks").Objects); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("drift restored", func(t *testing.T) {
		dyn := env.Clusters["eks"].Dynamic.Resource(tsGVR).Namespace("shop")
		patch := `{"spec":{"backends":[{"service":"cart-local","weight":90},{"service":"cart-local-onprem","weight":10}]}}`
		if _, err := dyn.Patch(t.Context(), "cart", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		a := newApplier(t, env, "eks", apply.Options{})
		cs, err := a.Apply(t.Context(), mig, res.Cluster("eks").Objects)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := cs.Find(apply.ObjectID{Group: "split.smi-spec.io", Kind: "TrafficSplit", Namespace: "shop", Name: "cart"})
		if c.Action != apply.ActionConfigured || !c.Drift {
			t.Errorf("cart split: %+v, want configured with drift", c)
		}
		if got := weights(t, env, "eks", "shop", "cart"); !slices.Equal(got, []int64{0, 100}) {
			t.Errorf("weights %v after restore, want [0 100]", got)
		}
	})

	t.Run("empty render never prunes", func(t *testing.T) {
		a := newApplier(t, env, "onprem", apply.Options{})
		cs, err := a.Apply(t.Context(), mig, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 0 {
			t.Errorf("changes on an empty render: %+v", cs)
		}
		objs := res.Cluster("onprem").Objects
		versions(t, env, "onprem", objs) // fails when anything is gone
		ids, err := a.Inventory(t.Context(), mig)
		if err != nil || len(ids) != len(objs) {
			t.Errorf("inventory has %d objects (%v), want %d", len(ids), err, len(objs))
		}
	})

	t.Run("prune on removal", func(t *testing.T) {
		a := newApplier(t, env, "onprem", apply.Options{})
		objs := without(res.Cluster("onprem").Objects, "shop/returns")
		// An object of the inventory someone took away from ferry is left.
		svcs := env.Clusters["onprem"].Client.CoreV1().Services("shop")
		patch := `{"metadata":{"labels":{"app.kubernetes.io/managed-by":"someone"}}}`
		if _, err := svcs.Patch(t.Context(), "returns-local", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		pd, err := a.PruneDiff(t.Context(), mig, objs)
		if err != nil {
			t.Fatal(err)
		}
		if len(pd) != 1 || pd[0].ID.Name != "returns" || pd[0].Desired != nil || pd[0].Live == nil {
			t.Errorf("PruneDiff: %+v, want only the returns split, to be deleted", pd)
		}
		cs, err := a.Apply(t.Context(), mig, objs)
		if err != nil {
			t.Fatal(err)
		}
		split, _ := cs.Find(apply.ObjectID{Group: "split.smi-spec.io", Kind: "TrafficSplit", Namespace: "shop", Name: "returns"})
		if split.Action != apply.ActionPruned {
			t.Errorf("returns split: %+v, want pruned", split)
		}
		svc, _ := cs.Find(apply.ObjectID{Kind: "Service", Namespace: "shop", Name: "returns-local"})
		if svc.Action != apply.ActionSkipped {
			t.Errorf("returns-local: %+v, want skipped (not managed by ferry)", svc)
		}
		if _, err := env.Clusters["onprem"].Dynamic.Resource(tsGVR).Namespace("shop").Get(t.Context(), "returns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("returns split still there: %v", err)
		}
		if _, err := svcs.Get(t.Context(), "returns-local", metav1.GetOptions{}); err != nil {
			t.Errorf("returns-local deleted: %v", err)
		}
		if _, err := svcs.Get(t.Context(), "returns", metav1.GetOptions{}); err != nil {
			t.Errorf("the service's own Service deleted: %v", err)
		}
		ids, _ := a.Inventory(t.Context(), mig)
		if len(ids) != len(objs) {
			t.Errorf("inventory has %d objects, want %d", len(ids), len(objs))
		}
	})

	t.Run("conflict with another apply manager", func(t *testing.T) {
		dyn := env.Clusters["eks"].Dynamic.Resource(tsGVR).Namespace("shop")
		theirs := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit",
			"metadata": map[string]any{"name": "catalog", "namespace": "shop"},
			"spec": map[string]any{"service": "catalog", "backends": []any{
				map[string]any{"service": "catalog-local", "weight": int64(50)},
				map[string]any{"service": "catalog-local-onprem", "weight": int64(50)},
			}},
		}}
		if _, err := dyn.Apply(t.Context(), "catalog", theirs, metav1.ApplyOptions{FieldManager: "kubectl", Force: true}); err != nil {
			t.Fatal(err)
		}
		a := newApplier(t, env, "eks", apply.Options{})
		cs, err := a.Apply(t.Context(), mig, without(res.Cluster("eks").Objects, "shop/search"))
		var ce *apply.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("apply: %v, want a *ConflictError", err)
		}
		id := apply.ObjectID{Group: "split.smi-spec.io", Kind: "TrafficSplit", Namespace: "shop", Name: "catalog"}
		if c, _ := cs.Find(id); c.Action != apply.ActionConflict || !strings.Contains(c.Reason, "kubectl") {
			t.Errorf("catalog split: %+v, want conflict naming kubectl", c)
		}
		if !slices.Equal(ce.Objects, []apply.ObjectID{id}) {
			t.Errorf("conflicting objects %v", ce.Objects)
		}
		if got := weights(t, env, "eks", "shop", "catalog"); !slices.Equal(got, []int64{50, 50}) {
			t.Errorf("weights %v, want kubectl's [50 50] kept", got)
		}
		if _, err := dyn.Get(t.Context(), "search", metav1.GetOptions{}); err != nil {
			t.Errorf("search split pruned although an apply failed: %v", err)
		}
		forced := newApplier(t, env, "eks", apply.Options{ForceConflicts: true})
		if _, err := forced.Apply(t.Context(), mig, res.Cluster("eks").Objects); err != nil {
			t.Fatalf("forced apply: %v", err)
		}
		if got := weights(t, env, "eks", "shop", "catalog"); !slices.Equal(got, []int64{0, 100}) {
			t.Errorf("weights %v after forced apply, want [0 100]", got)
		}
	})

	t.Run("partial Service labels and release", func(t *testing.T) {
		c := env.Clusters["eks"].Client
		mustNamespace(t, c, "edge")
		mustService(t, c, "edge", "web", map[string]string{"team": "web"})
		partial := func(name string) renderer.Object {
			return renderer.Object{APIVersion: "v1", Kind: "Service", Namespace: "edge", Name: name, Migration: "edge", Service: "edge/" + name, Partial: true,
				YAML: fmt.Appendf(nil, `apiVersion: v1
kind: Service
metadata:
  annotations:
    ferry.dev/partial: "true"
    service.cilium.io/global: "true"
  labels:
    ferry.dev/migration: edge
    ferry.dev/service: edge.%s
  name: %s
  namespace: edge
`, name, name)}
		}
		a := newApplier(t, env, "eks", apply.Options{})
		cs, err := a.Apply(t.Context(), "edge", []renderer.Object{partial("web"), partial("absent")})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := cs.Find(apply.ObjectID{Kind: "Service", Namespace: "edge", Name: "web"}); got.Action != apply.ActionConfigured {
			t.Errorf("web: %+v, want configured", got)
		}
		if got, _ := cs.Find(apply.ObjectID{Kind: "Service", Namespace: "edge", Name: "absent"}); got.Action != apply.ActionSkipped || got.Reason == "" {
			t.Errorf("absent: %+v, want skipped with a reason", got)
		}
		if _, err := c.CoreV1().Services("edge").Get(t.Context(), "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a partial Service was created: %v", err)
		}
		svc, _ := c.CoreV1().Services("edge").Get(t.Context(), "web", metav1.GetOptions{})
		if svc.Labels["ferry.dev/migration"] != "edge" || svc.Annotations["service.cilium.io/global"] != "true" || svc.Labels["team"] != "web" {
			t.Errorf("web after apply: labels %v annotations %v", svc.Labels, svc.Annotations)
		}
		cs, err = a.Apply(t.Context(), "edge", []renderer.Object{partial("web")})
		if err != nil || cs.Count(apply.ActionUnchanged) != 1 {
			t.Errorf("re-apply: %+v %v, want unchanged", cs, err)
		}
		rel := newApplier(t, env, "eks", apply.Options{PruneEmpty: true})
		cs, err = rel.Apply(t.Context(), "edge", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := cs.Find(apply.ObjectID{Kind: "Service", Namespace: "edge", Name: "web"}); got.Action != apply.ActionPruned {
			t.Errorf("web: %+v, want pruned (released)", got)
		}
		svc, err = c.CoreV1().Services("edge").Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("web deleted on release: %v", err)
		}
		if _, ok := svc.Labels["ferry.dev/migration"]; ok {
			t.Errorf("ferry's label kept after release: %v", svc.Labels)
		}
		if _, ok := svc.Annotations["service.cilium.io/global"]; ok {
			t.Errorf("ferry's annotation kept after release: %v", svc.Annotations)
		}
		if svc.Labels["team"] != "web" || len(svc.Spec.Ports) != 1 {
			t.Errorf("owner's fields changed: labels %v ports %v", svc.Labels, svc.Spec.Ports)
		}

		// A label the owner applied is never taken over, even with force.
		owned := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": "web", "namespace": "edge", "labels": map[string]any{"ferry.dev/migration": "theirs"}},
		}}
		if _, err := env.Clusters["eks"].Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("services")).Namespace("edge").Apply(t.Context(), "web", owned, metav1.ApplyOptions{FieldManager: "owner-apply"}); err != nil {
			t.Fatal(err)
		}
		forced := newApplier(t, env, "eks", apply.Options{ForceConflicts: true})
		cs, err = forced.Apply(t.Context(), "edge", []renderer.Object{partial("web")})
		var ce *apply.ConflictError
		if !errors.As(err, &ce) || cs.Count(apply.ActionConflict) != 1 {
			t.Errorf("forced apply of a partial Service over the owner's label: %+v %v, want a conflict", cs, err)
		}
		svc, _ = c.CoreV1().Services("edge").Get(t.Context(), "web", metav1.GetOptions{})
		if svc.Labels["ferry.dev/migration"] != "theirs" {
			t.Errorf("owner's label taken over: %v", svc.Labels)
		}
	})

	t.Run("ready precondition", func(t *testing.T) {
		c := env.Clusters["onprem"].Client
		a := newApplier(t, env, "onprem", apply.Options{})
		if ok, why := a.Ready(t.Context(), "shop", "nope"); ok || !strings.Contains(why, "does not exist") {
			t.Errorf("missing Service: %v %q", ok, why)
		}
		if ok, why := a.Ready(t.Context(), "shop", "cart"); ok || !strings.Contains(why, "no ready endpoints") {
			t.Errorf("no slices: %v %q", ok, why)
		}
		no, yes := false, true
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "cart-1", Namespace: "shop", Labels: map[string]string{"kubernetes.io/service-name": "cart"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}}},
		}
		if _, err := c.DiscoveryV1().EndpointSlices("shop").Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if ok, why := a.Ready(t.Context(), "shop", "cart"); ok || !strings.Contains(why, "no ready endpoints") {
			t.Errorf("unready endpoint: %v %q", ok, why)
		}
		slice.Name = "cart-2"
		slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}}
		if _, err := c.DiscoveryV1().EndpointSlices("shop").Create(t.Context(), slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if ok, why := a.Ready(t.Context(), "shop", "cart"); !ok {
			t.Errorf("ready endpoint: %v %q", ok, why)
		}
	})

	t.Run("namespace first, never pruned", func(t *testing.T) { testNamespaceFirstNeverPruned(t, env) })

	t.Run("every example accepted by dry-run", func(t *testing.T) {
		dirs, _ := filepath.Glob("../../examples/*")
		for _, dir := range dirs {
			if filepath.Base(dir) == "ci" { // CI pipelines, not a plan repository
				continue
			}
			_, res := render(t, dir, plans.Steps{})
			for _, out := range res.Clusters {
				for _, name := range env.Names() {
					c := env.Clusters[name].Client
					for _, o := range out.Objects {
						if o.Namespace != "" {
							mustNamespace(t, c, o.Namespace)
						}
					}
					a := newApplier(t, env, name, apply.Options{})
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					diffs, err := a.Diff(ctx, out.Objects)
					cancel()
					if err != nil {
						t.Errorf("%s: %s rendered into %s: %v", filepath.Base(dir), out.Name, name, err)
						continue
					}
					for _, d := range diffs {
						if d.Desired == nil && d.Skipped == "" {
							t.Errorf("%s: %s: no dry-run result", filepath.Base(dir), d.ID)
						}
					}
				}
			}
		}
	})
}

func testNamespaceFirstNeverPruned(t *testing.T, env *cluster.Env) {
	obj := func(kind, ns, name, body string) renderer.Object {
		return renderer.Object{APIVersion: "v1", Kind: kind, Namespace: ns, Name: name, YAML: []byte(body)}
	}
	ns := obj("Namespace", "", "team", `apiVersion: v1
kind: Namespace
metadata:
  labels:
    app.kubernetes.io/managed-by: ferry
  name: team
`)
	cm := obj("ConfigMap", "team", "settings", `apiVersion: v1
kind: ConfigMap
metadata:
  labels:
    app.kubernetes.io/managed-by: ferry
  name: settings
  namespace: team
data:
  a: b
`)
	a := newApplier(t, env, "onprem", apply.Options{PruneEmpty: true})
	// The ConfigMap comes first: the Namespace must still be applied before it.
	cs, err := a.Apply(t.Context(), "ns", []renderer.Object{cm, ns})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Count(apply.ActionCreated) != 2 {
		t.Errorf("changes %+v, want 2 created", cs)
	}
	cs, err = a.Apply(t.Context(), "ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := cs.Find(apply.ObjectID{Kind: "Namespace", Name: "team"}); c.Action != apply.ActionSkipped {
		t.Errorf("namespace: %+v, want skipped", c)
	}
	if c, _ := cs.Find(apply.ObjectID{Kind: "ConfigMap", Namespace: "team", Name: "settings"}); c.Action != apply.ActionPruned {
		t.Errorf("configmap: %+v, want pruned", c)
	}
	got, err := env.Clusters["onprem"].Client.CoreV1().Namespaces().Get(t.Context(), "team", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp != nil {
		t.Errorf("namespace team deleted: %v", err)
	}
}

func TestTargetAppliesEveryCluster(t *testing.T) {
	env := cluster.StartT(t, "onprem", "eks")
	_, res := render(t, "../../examples/linkerd-eks", plans.Steps{})
	appliers := map[string]*apply.Applier{}
	for _, name := range env.Names() {
		mustNamespace(t, env.Clusters[name].Client, "shop")
		appliers[name] = newApplier(t, env, name, apply.Options{})
	}
	tg := apply.NewTarget(appliers)
	for i, want := range []apply.Action{apply.ActionCreated, apply.ActionUnchanged} {
		if err := tg.Apply(t.Context(), res); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		for _, name := range env.Names() {
			cs := tg.LastChanges()[name][mig]
			if n := len(res.Cluster(name).Objects); cs.Count(want) != n {
				t.Errorf("apply %d: %s: %d %s, want %d", i, name, cs.Count(want), want, n)
			}
		}
	}
	if r := tg.Ready(t.Context(), "elsewhere", "shop", "cart"); r.Ready || r.Unknown || !strings.Contains(r.Reason, "no API access") {
		t.Errorf("unknown cluster: %+v", r)
	}
}
