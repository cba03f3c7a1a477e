package deploy_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/reconciler/events"
	"github.com/ferry-dev/ferry/reconciler/leader"
	"github.com/ferry-dev/ferry/reconciler/preflight"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/cluster"
)

const (
	namespace = "ferry-system"
	// saUser is the ServiceAccount's user name; checked against the build.
	saUser = "system:serviceaccount:ferry-system:ferry"
)

// build runs the kustomize API on the base, as `kubectl apply -k deploy/`
// does, and returns its objects in kustomize's output order.
func build(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, u)
	}
	return out
}

// one returns the only object of kind in objs, converted into T.
func one[T any](t *testing.T, objs []*unstructured.Unstructured, kind string) (*T, *unstructured.Unstructured) {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the base has %d objects of kind %s, want 1", len(found), kind)
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(found[0].Object, &v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return &v, found[0]
}

// TestBaseObjects checks what the base holds and how the pieces refer to
// each other.
func TestBaseObjects(t *testing.T) {
	objs := build(t)
	var got []string
	for _, u := range objs {
		got = append(got, u.GetKind())
		if u.GetKind() == "Namespace" || strings.HasPrefix(u.GetKind(), "Cluster") {
			if u.GetNamespace() != "" {
				t.Errorf("%s %s: cluster-scoped, has namespace %q", u.GetKind(), u.GetName(), u.GetNamespace())
			}
			continue
		}
		if u.GetNamespace() != namespace {
			t.Errorf("%s %s: namespace %q, want %s", u.GetKind(), u.GetName(), u.GetNamespace(), namespace)
		}
	}
	sort.Strings(got)
	want := []string{"ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Namespace", "Role", "RoleBinding", "Service", "ServiceAccount"}
	if !slices.Equal(got, want) {
		t.Fatalf("kinds = %v, want %v", got, want)
	}

	ns, _ := one[corev1.Namespace](t, objs, "Namespace")
	if ns.Name != namespace || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s labels %v: want %s with Pod Security \"restricted\" enforced", ns.Name, ns.Labels, namespace)
	}
	sa, _ := one[corev1.ServiceAccount](t, objs, "ServiceAccount")
	if u := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name; u != saUser {
		t.Fatalf("ServiceAccount is %s, the tests expect %s", u, saUser)
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		if kind == "RoleBinding" {
			b, _ := one[rbacv1.RoleBinding](t, objs, kind)
			subjects, ref = b.Subjects, b.RoleRef
		} else {
			b, _ := one[rbacv1.ClusterRoleBinding](t, objs, kind)
			subjects, ref = b.Subjects, b.RoleRef
		}
		wantSub := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}}
		if !slices.Equal(subjects, wantSub) {
			t.Errorf("%s subjects = %+v, want only %+v", kind, subjects, wantSub)
		}
		wantRef := strings.TrimSuffix(kind, "Binding")
		if ref.Kind != wantRef || ref.Name != "ferry" {
			t.Errorf("%s refers to %s %s, want %s ferry", kind, ref.Kind, ref.Name, wantRef)
		}
	}

	cm, _ := one[corev1.ConfigMap](t, objs, "ConfigMap")
	if !strings.HasPrefix(cm.Name, "ferry-config-") {
		t.Errorf("ConfigMap %s: want ferry-config with a content hash", cm.Name)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	for _, k := range []string{"url", "branch", "path", "interval"} {
		if cfg[k] == nil {
			t.Errorf("config.yaml has no %s", k)
		}
	}
	if d, ok := cfg["interval"].(string); !ok {
		t.Errorf("config.yaml interval %v is not a duration string", cfg["interval"])
	} else if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("config.yaml interval: %v", err)
	}

	dep, _ := one[appsv1.Deployment](t, objs, "Deployment")
	checkDeployment(t, dep, sa, cm)

	svc, _ := one[corev1.Service](t, objs, "Service")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("Service ports = %+v, want 8080 to the container port named http", svc.Spec.Ports)
	}
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("Service has no selector")
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, dep.Spec.Template.Labels)
		}
	}
}

func checkDeployment(t *testing.T, dep *appsv1.Deployment, sa *corev1.ServiceAccount, cm *corev1.ConfigMap) {
	t.Helper()
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("pod runs as ServiceAccount %q, want %s", pod.ServiceAccountName, sa.Name)
	}
	if sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector); err != nil || sel.Empty() {
		t.Errorf("Deployment selector %v: %v", dep.Spec.Selector, err)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"run ", "--config=/etc/ferry/config.yaml", "--http-addr=:8080", "--state-dir=/var/lib/ferry"} {
		if !strings.Contains(args, want) {
			t.Errorf("container args %q lack %q", args, want)
		}
	}
	if len(c.Command) != 0 {
		t.Errorf("container command %v overrides the image's ENTRYPOINT", c.Command)
	}

	// Probes on the port named http, which is 8080.
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("container ports = %+v, want http 8080", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("probe %s: %+v, want an HTTP GET of %s on port http", name, p, name)
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe is %s, want /healthz", c.LivenessProbe.HTTPGet.Path)
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if c.Resources.Requests.Name(r, "").IsZero() {
			t.Errorf("no %s request", r)
		}
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("no memory limit")
	}

	// Non-root, read-only, no privileges, at pod and container level.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("securityContext missing: pod %v, container %v", psc, sc)
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != nonrootUID {
		t.Errorf("pod securityContext runAsNonRoot %v runAsUser %v, want true and %d (the image's USER)", psc.RunAsNonRoot, psc.RunAsUser, nonrootUID)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("container runAsNonRoot not true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container readOnlyRootFilesystem not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container allowPrivilegeEscalation not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container is privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities = %+v, want drop [ALL] and add none", sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile = %v, want RuntimeDefault", sc.SeccompProfile)
	}

	// Writable places are emptyDirs; the config is the generated ConfigMap.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
			continue
		}
		switch {
		case v.EmptyDir != nil:
		case v.ConfigMap != nil:
			if !m.ReadOnly {
				t.Errorf("mount %s of a ConfigMap is not read-only", m.MountPath)
			}
		default:
			t.Errorf("volume %s is neither an emptyDir nor a ConfigMap: %+v", v.Name, v.VolumeSource)
		}
	}
	for _, p := range []string{"/var/lib/ferry", "/tmp"} {
		if m, ok := mounts[p]; !ok || vols[m.Name].EmptyDir == nil {
			t.Errorf("%s is not an emptyDir mount", p)
		}
	}
	if m, ok := mounts["/etc/ferry"]; !ok || vols[m.Name].ConfigMap == nil || vols[m.Name].ConfigMap.Name != cm.Name {
		t.Errorf("/etc/ferry is not a mount of ConfigMap %s", cm.Name)
	}

	// Secrets only through the environment, and only the two documented.
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		if e.Name != "FERRY_GIT_TOKEN" && e.Name != "FERRY_WEBHOOK_SECRET" {
			t.Errorf("env %s comes from a Secret; only FERRY_GIT_TOKEN and FERRY_WEBHOOK_SECRET should", e.Name)
		}
	}
	for _, name := range []string{"FERRY_GIT_TOKEN", "FERRY_WEBHOOK_SECRET"} {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}) {
			t.Errorf("env %s is not read from a Secret", name)
		}
	}
}

// TestLeastPrivilegeStatic checks the RBAC rules without a cluster: no
// wildcards, no Secrets, no way to grant itself more.
func TestLeastPrivilegeStatic(t *testing.T) {
	objs := build(t)
	cr, _ := one[rbacv1.ClusterRole](t, objs, "ClusterRole")
	role, _ := one[rbacv1.Role](t, objs, "Role")
	if cr.AggregationRule != nil {
		t.Errorf("ClusterRole aggregates other roles")
	}
	// What ferry does in its own namespace, sorted (see role.yaml).
	roleNeeds := map[schema.GroupResource][]string{
		{Group: "", Resource: "configmaps"}:                {"create", "get", "list", "patch", "update"},
		{Group: "coordination.k8s.io", Resource: "leases"}: {"create", "get", "update"},
		{Group: "events.k8s.io", Resource: "events"}:       {"create", "get", "update"},
	}
	for name, rules := range map[string][]rbacv1.PolicyRule{"ClusterRole": cr.Rules, "Role": role.Rules} {
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s: non-resource URLs %v", name, r.NonResourceURLs)
			}
			for _, s := range slices.Concat(r.APIGroups, r.Resources, r.Verbs, r.ResourceNames) {
				if strings.Contains(s, "*") {
					t.Errorf("%s: wildcard %q in %+v", name, s, r)
				}
			}
			for _, res := range r.Resources {
				base, _, _ := strings.Cut(res, "/")
				if base == "secrets" || strings.Contains(res, "/") {
					t.Errorf("%s: grants %s", name, res)
				}
				// RBAC objects, tokens, impersonation, pods: nothing ferry renders.
				if slices.Contains([]string{"roles", "clusterroles", "rolebindings", "clusterrolebindings", "serviceaccounts", "pods", "users", "groups"}, base) {
					t.Errorf("%s: grants %s", name, res)
				}
			}
			for _, v := range r.Verbs {
				if slices.Contains([]string{"escalate", "bind", "impersonate", "deletecollection", "approve", "sign"}, v) {
					t.Errorf("%s: verb %s on %v", name, v, r.Resources)
				}
			}
			if name == "Role" {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						gr := schema.GroupResource{Group: g, Resource: res}
						if got, want := slices.Sorted(slices.Values(r.Verbs)), roleNeeds[gr]; !slices.Equal(got, want) {
							t.Errorf("Role grants %v on %s; ferry uses %v", got, gr, want)
						}
						delete(roleNeeds, gr)
					}
				}
			}
			// Invariant 5: ferry never takes over Services it merely labels;
			// server-side apply needs patch, never update.
			if slices.Contains(r.Resources, "services") && slices.Contains(r.Verbs, "update") {
				t.Errorf("%s: update on Services", name)
			}
		}
	}
	for gr, verbs := range roleNeeds {
		t.Errorf("Role does not grant %v on %s", verbs, gr)
	}
}

// variant is one provider configuration rendered to find the kinds ferry
// writes; every provider of plans.Providers gets at least its defaults.
var variantOptions = map[plans.Provider][]func(m *plans.Migration){
	plans.Linkerd: {
		nil,
		func(m *plans.Migration) { m.Linkerd.Split = "httproute" },
		func(m *plans.Migration) { m.Linkerd.Export = "remote-discovery" },
	},
	plans.Istio: {
		nil,
		func(m *plans.Migration) { m.Istio.Mode = "sidecar" },
	},
	plans.GatewayAPI: {
		nil,
		func(m *plans.Migration) { m.GatewayAPI.Route = "grpc" },
	},
}

// providerRepo builds a migration from dc1 to eks with every provider
// option at its default, as the schema sets them.
func providerRepo(p plans.Provider, setup func(m *plans.Migration)) *plans.Repository {
	steps := []plans.Step{{Weight: 0}, {Weight: 10}, {Weight: 50}, {Weight: 100}}
	switch {
	case !p.CanWeight():
		steps = []plans.Step{{Weight: 0}, {Weight: 100}}
	case p.CanMirror():
		steps = append([]plans.Step{{Weight: 0}, {Mirror: 20}}, steps[1:]...)
	}
	m := &plans.Migration{
		Name: "move-" + string(p), From: "dc1", To: "eks", Provider: p,
		Linkerd:     plans.LinkerdOptions{Split: "smi", Export: "exported"},
		Istio:       plans.IstioOptions{Mode: "ambient"},
		GatewayAPI:  plans.GatewayAPIOptions{Route: "http"},
		KubeSlice:   plans.KubeSliceOptions{Slice: "shop-slice"},
		ExternalDNS: plans.ExternalDNSOptions{Domain: "example.com"},
		Steps:       steps,
		Waves: []*plans.Wave{{Name: "first", Services: []*plans.Service{
			{Namespace: "shop", Name: "web", Port: 80, Wave: "first", Hostname: "web.shop.example.com", Aliases: []string{"web.legacy.example"}},
		}}},
	}
	if setup != nil {
		setup(m)
	}
	return &plans.Repository{
		Clusters:   map[string]*plans.Cluster{"dc1": {Name: "dc1"}, "eks": {Name: "eks"}},
		Migrations: []*plans.Migration{m},
	}
}

// renderCase is a repository and a render of it.
type renderCase struct {
	name string
	repo *plans.Repository
	res  *renderer.Result
}

// renders renders every example under examples/ and every provider
// variant at every step index of its migrations (so weight 50 and, where a
// provider mirrors, mirror steps are among them).
func renders(t *testing.T) []renderCase {
	t.Helper()
	var repos []renderCase
	dirs, err := filepath.Glob(filepath.Join("..", "examples", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, dir := range dirs {
		// examples/ci holds CI pipelines, not plans (as in renderer's tests).
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || filepath.Base(dir) == "ci" {
			continue
		}
		repo, err := plans.Load(os.DirFS(dir))
		if err != nil {
			t.Fatalf("load %s: %v", dir, err)
		}
		repos = append(repos, renderCase{name: filepath.Base(dir), repo: repo})
	}
	for _, p := range plans.Providers {
		opts := variantOptions[p]
		if len(opts) == 0 {
			opts = []func(*plans.Migration){nil}
		}
		for i, o := range opts {
			repos = append(repos, renderCase{name: fmt.Sprintf("%s-%d", p, i), repo: providerRepo(p, o)})
		}
	}
	var out []renderCase
	for _, rc := range repos {
		maxSteps := 0
		for _, m := range rc.repo.Migrations {
			maxSteps = max(maxSteps, len(m.Steps))
		}
		for i := range maxSteps {
			st := plans.Steps{}
			for _, m := range rc.repo.Migrations {
				for _, s := range m.Services() {
					st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = min(i, len(m.Steps)-1)
				}
			}
			res, err := renderer.Render(rc.repo, st)
			if err != nil {
				t.Fatalf("render %s at step %d: %v", rc.name, i, err)
			}
			out = append(out, renderCase{name: fmt.Sprintf("%s@%d", rc.name, i), repo: rc.repo, res: res})
		}
	}
	return out
}

// renderedKinds returns every kind ferry renders, and whether ferry only
// ever writes it as a partial object (labels on a Service it does not own).
func renderedKinds(t *testing.T, cases []renderCase) map[schema.GroupVersionKind]bool {
	t.Helper()
	kinds := map[schema.GroupVersionKind]bool{}
	for _, rc := range cases {
		for _, cl := range rc.res.Clusters {
			for _, o := range cl.Objects {
				gvk := schema.FromAPIVersionAndKind(o.APIVersion, o.Kind)
				partialOnly, seen := kinds[gvk]
				kinds[gvk] = o.Partial && (partialOnly || !seen)
			}
		}
	}
	if len(kinds) == 0 {
		t.Fatal("the renders hold no objects")
	}
	return kinds
}

// readOnlyExtras are the resources outside the rendered kinds that ferry
// reads, with the verbs it uses, and where.
var readOnlyExtras = map[schema.GroupResource][]string{
	{Group: "discovery.k8s.io", Resource: "endpointslices"}: {"list"}, // apply.Applier.Ready
	{Group: "", Resource: "namespaces"}:                     {"get"},  // preflight; apply ensures ferry-system
	{Group: "multicluster.linkerd.io", Resource: "links"}:   {"get"},  // preflight: the Link to the peer
}

// ownedVerbs are the verbs ferry uses on the kinds it owns (the ones
// preflight checks); partialVerbs on Services it only labels.
var (
	ownedVerbs   = []string{"get", "list", "create", "patch", "delete"}
	partialVerbs = []string{"get", "patch"}
)

// TestAcceptedByAPIServer sends every object of the base to a real API
// server with a server-side apply dry run, then applies it and checks, as
// the ServiceAccount, that the RBAC grants what ferry does and no more.
func TestAcceptedByAPIServer(t *testing.T) {
	objs := build(t)
	cases := renders(t)
	kinds := renderedKinds(t, cases)

	env := cluster.StartT(t, "home")
	c := env.Clusters["home"]
	ctx := t.Context()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))

	ssa := func(u *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			return nil, err
		}
		opts := metav1.ApplyOptions{FieldManager: "deploy-test"}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			return c.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u, opts)
		}
		return c.Dynamic.Resource(m.Resource).Apply(ctx, u.GetName(), u, opts)
	}

	// Cluster-scoped objects first: a namespaced dry run needs its
	// namespace to exist.
	for _, u := range objs {
		if u.GetNamespace() == "" {
			if _, err := ssa(u, true); err != nil {
				t.Errorf("dry-run apply %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after a dry run, namespace %s: %v, want not found", namespace, err)
	}
	ns := objs[slices.IndexFunc(objs, func(u *unstructured.Unstructured) bool { return u.GetKind() == "Namespace" })]
	if _, err := ssa(ns, false); err != nil {
		t.Fatalf("apply Namespace: %v", err)
	}
	for _, u := range objs {
		if u.GetNamespace() != "" {
			if _, err := ssa(u, true); err != nil {
				t.Errorf("dry-run apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The pod template passes Pod Security "restricted", which the
	// namespace enforces (nothing runs pods here, so create one dry).
	dep, _ := one[appsv1.Deployment](t, objs, "Deployment")
	sa, saObj := one[corev1.ServiceAccount](t, objs, "ServiceAccount")
	if _, err := ssa(saObj, false); err != nil {
		t.Fatalf("apply ServiceAccount: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ferry-dry-run", Namespace: namespace, Labels: dep.Spec.Template.Labels},
		Spec:       dep.Spec.Template.Spec,
	}
	if _, err := c.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("a pod of the Deployment's template in %s: %v", namespace, err)
	}
	// The same pod as root must be refused, or the check above proves nothing.
	root := pod.DeepCopy()
	root.Spec.SecurityContext.RunAsNonRoot = nil
	root.Spec.SecurityContext.RunAsUser = new(int64)
	root.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
	if _, err := c.Client.CoreV1().Pods(namespace).Create(ctx, root, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("a root pod in %s: %v, want Forbidden by Pod Security", namespace, err)
	}

	for _, u := range objs {
		if _, err := ssa(u, false); err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}

	// Everything below runs as the ServiceAccount.
	asSA := rest.CopyConfig(c.Config)
	asSA.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
	}
	saClient, err := kubernetes.NewForConfig(asSA)
	if err != nil {
		t.Fatal(err)
	}
	can := func(ra authorizationv1.ResourceAttributes) bool {
		t.Helper()
		r, err := saClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectAccessReview %+v: %v", ra, err)
		}
		return r.Status.Allowed
	}

	t.Run("access reviews", func(t *testing.T) {
		for _, tc := range []struct {
			ra   authorizationv1.ResourceAttributes
			want bool
		}{
			{authorizationv1.ResourceAttributes{Verb: "patch", Group: "gateway.networking.k8s.io", Resource: "httproutes", Namespace: "shop", Name: "web"}, true},
			{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "services", Namespace: "shop", Name: "web"}, true},
			{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "secrets", Namespace: "shop", Name: "db"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "secrets", Namespace: namespace, Name: "ferry-secrets"}, false},
			{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: namespace, Name: "ferry-secrets"}, false},
			{authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "services", Namespace: "shop", Name: "web"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "namespaces", Name: "shop"}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: namespace}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, false},
			{authorizationv1.ResourceAttributes{Verb: "delete", Group: "multicluster.linkerd.io", Resource: "links", Namespace: preflight.LinkNamespace, Name: "eks"}, false},
			// Its own namespace only: state, inventory, leases, events.
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: namespace, Name: "ferry-m1"}, true},
			{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps", Namespace: namespace, Name: apply.InventoryName("m1")}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: "shop", Name: "ferry-m1"}, false},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace, Name: "ferry"}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", Name: "kube-controller-manager"}, false},
			{authorizationv1.ResourceAttributes{Verb: "list", Resource: "configmaps", Namespace: namespace}, true},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: namespace}, true},
			{authorizationv1.ResourceAttributes{Verb: "update", Group: "events.k8s.io", Resource: "events", Namespace: namespace, Name: "ferry-m1.1"}, true},
			// ferry posts events.k8s.io Events only.
			{authorizationv1.ResourceAttributes{Verb: "create", Resource: "events", Namespace: namespace}, false},
			{authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: "shop"}, false},
		} {
			if got := can(tc.ra); got != tc.want {
				t.Errorf("%s %s.%s %s/%s: allowed %v, want %v", tc.ra.Verb, tc.ra.Resource, tc.ra.Group, tc.ra.Namespace, tc.ra.Name, got, tc.want)
			}
		}
	})

	// Every rendered kind is covered with the verbs ferry uses on it, and
	// every ClusterRole rule is for a rendered kind or a documented read.
	t.Run("rendered kinds", func(t *testing.T) {
		need := map[schema.GroupResource][]string{}
		for gvk, partialOnly := range kinds {
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("ferry renders %s, which the API server does not serve: %v", gvk, err)
				continue
			}
			verbs := ownedVerbs
			if partialOnly {
				verbs = partialVerbs
			}
			gr := m.Resource.GroupResource()
			need[gr] = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(need[gr]), verbs...))))
			for _, v := range verbs {
				if !can(authorizationv1.ResourceAttributes{Verb: v, Group: gvk.Group, Version: gvk.Version, Resource: m.Resource.Resource, Namespace: "shop"}) {
					t.Errorf("ferry renders %s but may not %s %s", gvk, v, gr)
				}
			}
		}
		for gr, verbs := range readOnlyExtras {
			need[gr] = verbs
		}
		cr, _ := one[rbacv1.ClusterRole](t, objs, "ClusterRole")
		for _, r := range cr.Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					gr := schema.GroupResource{Group: g, Resource: res}
					want, ok := need[gr]
					if !ok {
						t.Errorf("ClusterRole grants %v on %s, which ferry neither renders nor reads", r.Verbs, gr)
						continue
					}
					for _, v := range r.Verbs {
						if !slices.Contains(want, v) {
							t.Errorf("ClusterRole grants %s on %s; ferry only uses %v", v, gr, want)
						}
					}
				}
			}
		}
	})

	// ferry's own preflight, run as the ServiceAccount, finds every verb on
	// every kind of every render allowed.
	t.Run("preflight", func(t *testing.T) {
		seen := map[string]bool{}
		for _, rc := range cases {
			for _, out := range rc.res.Clusters {
				for _, r := range preflight.Check(ctx, asSA, rc.repo, out, 10*time.Second) {
					ok := strings.HasPrefix(r.Check, "rbac ") || strings.HasPrefix(r.Check, "serves ") || r.Check == "credentials" || r.Check == "reachable"
					if ok && !r.OK && !seen[r.Check+r.Reason] {
						seen[r.Check+r.Reason] = true
						t.Errorf("%s, cluster %s: %s: %s", rc.name, out.Name, r.Check, r.Reason)
					}
				}
			}
		}
	})

	// The ConfigMap progress store (--store=kube), as the ServiceAccount.
	t.Run("state", func(t *testing.T) {
		store := state.NewKube(saClient, namespace)
		if _, err := store.Save(ctx, state.Change{
			Migration: "m1", Commit: "0123abc", At: time.Now(),
			Services: map[string]plans.Progress{"shop/web": {}},
		}); err != nil {
			t.Fatalf("save: %v", err)
		}
		if snap, err := store.Load(ctx, "m1"); err != nil || snap.Commit != "0123abc" {
			t.Errorf("load = %+v, %v", snap, err)
		}
		if ms, err := store.Migrations(ctx); err != nil || !slices.Equal(ms, []string{"m1"}) {
			t.Errorf("migrations = %v, %v; want [m1]", ms, err)
		}
	})

	// Leader election and Events, as the ServiceAccount: the Lease is
	// created, released, and taken again (an update); a drift Warning is
	// posted. (Counting a series, an update of the Event, happens only
	// after the recorder's coalescing window; the access reviews cover it.)
	t.Run("lease and events", func(t *testing.T) {
		logger := slog.New(slog.DiscardHandler)
		el, err := leader.New(leader.Config{
			Client: saClient, Namespace: namespace, Identity: "deploy-test",
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
			Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			led := false
			err := el.Run(lctx, func(context.Context) { led = true })
			cancel()
			if err != nil {
				t.Fatalf("leader election %d: %v", i+1, err)
			}
			if !led {
				t.Fatalf("election %d: the ServiceAccount never acquired the Lease %s/%s", i+1, namespace, leader.DefaultName)
			}
		}
		if _, err := c.Client.CoordinationV1().Leases(namespace).Get(ctx, leader.DefaultName, metav1.GetOptions{}); err != nil {
			t.Errorf("Lease after the election: %v", err)
		}

		rec := events.New(saClient, namespace, "deploy-test", logger)
		if err := rec.Drift(ctx, "m1", "home", []string{"/Service/shop/web"}); err != nil {
			t.Fatalf("post a drift Event: %v", err)
		}
		list, err := c.Client.EventsV1().Events(namespace).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			t.Errorf("Events in %s: %d, %v; want the drift Warning", namespace, len(list.Items), err)
		}
	})

	// The applier itself, as the ServiceAccount: applies, prunes and
	// writes inventories in ferry-system with only these rights.
	t.Run("apply", func(t *testing.T) {
		services := map[string]*plans.Service{}
		for _, rc := range cases {
			for _, m := range rc.repo.Migrations {
				for _, s := range m.Services() {
					services[s.Ref()] = s
				}
			}
		}
		for _, s := range services {
			_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.Namespace}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			_, err = c.Client.CoreV1().Services(s.Namespace).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: int32(max(s.Port, 80))}}},
			}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		a, err := apply.New(asSA, "home", apply.Options{})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[apply.Action]int{}
		for _, rc := range cases {
			for _, out := range rc.res.Clusters {
				byMig := map[string][]renderer.Object{}
				for _, o := range out.Objects {
					m := o.Migration
					if m == "" {
						m = apply.OverlayInventory
					}
					byMig[m] = append(byMig[m], o)
				}
				for _, m := range slices.Sorted(maps.Keys(byMig)) {
					cs, err := a.Apply(ctx, m, byMig[m])
					if err != nil {
						t.Fatalf("%s, cluster %s, migration %s: %v", rc.name, out.Name, m, err)
					}
					for _, ch := range cs {
						counts[ch.Action]++
						if ch.Action == apply.ActionConflict || ch.Action == apply.ActionSkipped {
							t.Errorf("%s, cluster %s: %s %s: %s", rc.name, out.Name, ch.Action, ch.ID, ch.Reason)
						}
					}
				}
			}
		}
		// Both cluster sides of one migration share its inventory here, so
		// objects get created, changed and pruned.
		for _, act := range []apply.Action{apply.ActionCreated, apply.ActionConfigured, apply.ActionPruned} {
			if counts[act] == 0 {
				t.Errorf("no object was %s (counts %v): the run did not exercise it", act, counts)
			}
		}
		if ok, why := a.Ready(ctx, "shop", "web"); ok {
			t.Errorf("shop/web ready without endpoints: %s", why)
		} else if !strings.Contains(why, "no ready endpoints") {
			t.Errorf("readiness as the ServiceAccount: %s", why)
		}
	})
}
