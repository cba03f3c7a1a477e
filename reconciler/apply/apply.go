package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/renderer"
)

// FieldManager is the server-side apply field manager of every write.
const FieldManager = "ferry"

// InventoryNamespace holds the inventory ConfigMaps.
const InventoryNamespace = "ferry-system"

// Defaults of Options.
const (
	DefaultTimeout = 30 * time.Second
	DefaultQPS     = 50
	DefaultBurst   = 100
	// DefaultConcurrency keeps a few requests in flight: one object costs
	// two or three round trips (get, dry run, apply).
	DefaultConcurrency = 8
)

// Options tune an Applier. The zero value is usable.
type Options struct {
	// ForceConflicts takes fields over from other Apply managers instead of
	// reporting a conflict. It never applies to partial objects.
	ForceConflicts bool
	// PruneEmpty lets an Apply of no objects prune the whole inventory.
	PruneEmpty bool
	// Timeout bounds each API call (DefaultTimeout when zero).
	Timeout time.Duration
	// QPS and Burst limit the client's requests to this cluster
	// (DefaultQPS and DefaultBurst when zero).
	QPS   float32
	Burst int
	// Concurrency is how many objects are applied at once
	// (DefaultConcurrency when zero).
	Concurrency int
}

// Action is what Apply did to one object.
type Action string

// Actions of a Change.
const (
	ActionCreated    Action = "created"
	ActionConfigured Action = "configured"
	ActionUnchanged  Action = "unchanged"
	ActionSkipped    Action = "skipped"
	ActionPruned     Action = "pruned"
	ActionConflict   Action = "conflict"
)

// ObjectID names an object in a cluster.
type ObjectID struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String returns "group/Kind/namespace/name" (kubectl's style, "" parts kept).
func (id ObjectID) String() string {
	return id.Group + "/" + id.Kind + "/" + id.Namespace + "/" + id.Name
}

// Change is the outcome for one object.
type Change struct {
	ID     ObjectID
	Action Action
	// Partial marks a Service ferry only labels or annotates.
	Partial bool
	// Drift reports that the live object had moved away from what ferry
	// applied last and was restored.
	Drift bool
	// Reason explains a skip or a conflict.
	Reason string
}

// ChangeSet lists the outcome of an Apply, applies first, prunes last.
type ChangeSet []Change

// Count returns how many changes have action a.
func (cs ChangeSet) Count(a Action) int {
	n := 0
	for _, c := range cs {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Find returns the change of id, if any.
func (cs ChangeSet) Find(id ObjectID) (Change, bool) {
	for _, c := range cs {
		if c.ID == id {
			return c, true
		}
	}
	return Change{}, false
}

// ConflictError reports objects whose fields another Apply manager owns.
type ConflictError struct {
	Cluster string
	Objects []ObjectID
	Err     error // the first API error
}

func (e *ConflictError) Error() string {
	ids := make([]string, len(e.Objects))
	for i, id := range e.Objects {
		ids[i] = id.String()
	}
	return fmt.Sprintf("cluster %s: field conflicts on %s: %v", e.Cluster, strings.Join(ids, ", "), e.Err)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// Applier applies rendered objects to one cluster. It is safe for
// concurrent use by Applies of different migrations.
type Applier struct {
	cluster string
	cfg     *rest.Config
	opts    Options
	dyn     dynamic.Interface
	kube    kubernetes.Interface
	mapper  meta.ResettableRESTMapper
}

// New returns an Applier for the cluster cfg points at; cluster names it in
// errors.
func New(cfg *rest.Config, cluster string, opts Options) (*Applier, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.QPS <= 0 {
		opts.QPS = DefaultQPS
	}
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	if cfg.Timeout == 0 {
		cfg.Timeout = opts.Timeout
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: client: %w", cluster, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: client: %w", cluster, err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	return &Applier{cluster: cluster, cfg: cfg, opts: opts, dyn: dyn, kube: kube, mapper: mapper}, nil
}

// call runs f with the per-call timeout.
func (a *Applier) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	return f(ctx)
}

// object is one decoded rendered object.
type object struct {
	id      ObjectID
	u       *unstructured.Unstructured
	partial bool
	hash    string
	res     dynamic.ResourceInterface
}

func (a *Applier) decode(o renderer.Object) (*object, error) {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(o.YAML, &u.Object); err != nil {
		return nil, fmt.Errorf("cluster %s: decode %s/%s %s: %w", a.cluster, o.Kind, o.Namespace+"/"+o.Name, o.APIVersion, err)
	}
	gvk := u.GroupVersionKind()
	id := ObjectID{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	res, err := a.resource(gvk, u.GetNamespace())
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %s: %w", a.cluster, id, err)
	}
	sum := sha256.Sum256(o.YAML)
	return &object{id: id, u: u, partial: o.Partial, hash: hex.EncodeToString(sum[:8]), res: res}, nil
}

func (a *Applier) resource(gvk schema.GroupVersionKind, ns string) (dynamic.ResourceInterface, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// A CRD installed after the first lookup: rediscover once.
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// Apply applies objs, the complete render of migration for this cluster,
// records them in the migration's inventory and prunes what left it. It
// returns every object's outcome, also with an error (a *ConflictError
// when conflicts were the only failures). Nothing is pruned unless every
// object was applied.
func (a *Applier) Apply(ctx context.Context, migration string, objs []renderer.Object) (ChangeSet, error) {
	decoded := make([]*object, 0, len(objs))
	for _, o := range objs {
		d, err := a.decode(o)
		if err != nil {
			return nil, err
		}
		decoded = append(decoded, d)
	}
	inv, err := a.readInventory(ctx, migration)
	if err != nil {
		return nil, err
	}
	old := make(map[ObjectID]entry, len(inv))
	for _, e := range inv {
		old[e.id()] = e
	}

	var (
		cs        ChangeSet
		errs      []error
		conflicts []ObjectID
		firstConf error
	)
	changes := make([]Change, len(decoded))
	applyErrs := make([]error, len(decoded))
	// Namespaces and CRDs first, one at a time, so that what lives in
	// them finds them; everything else concurrently.
	for _, first := range []bool{true, false} {
		var wg sync.WaitGroup
		sem := make(chan struct{}, a.opts.Concurrency)
		if first {
			sem = make(chan struct{}, 1)
		}
		for i, o := range decoded {
			if isContainer(o.id) != first {
				continue
			}
			prev, had := old[o.id]
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				changes[i], applyErrs[i] = a.applyOne(ctx, o, had && prev.Hash == o.hash)
			})
		}
		wg.Wait()
	}
	applied := make(map[ObjectID]entry, len(decoded))
	for i, o := range decoded {
		c, err := changes[i], applyErrs[i]
		cs = append(cs, c)
		if c.Action != ActionSkipped && (err == nil || c.Action == ActionCreated || c.Action == ActionConfigured) {
			applied[o.id] = entry{APIVersion: o.u.GetAPIVersion(), Kind: o.id.Kind, Namespace: o.id.Namespace, Name: o.id.Name, Partial: o.partial, Hash: o.hash}
		}
		if err == nil {
			continue
		}
		if c.Action == ActionConflict {
			conflicts = append(conflicts, o.id)
			if firstConf == nil {
				firstConf = err
			}
			continue
		}
		errs = append(errs, fmt.Errorf("cluster %s: apply %s: %w", a.cluster, o.id, err))
	}
	if len(errs) > 0 || len(conflicts) > 0 {
		// Keep tracking everything known so that a later prune still sees it.
		for id, e := range old {
			if _, ok := applied[id]; !ok {
				applied[id] = e
			}
		}
		werr := a.writeInventory(ctx, migration, inv, applied)
		if len(conflicts) > 0 {
			errs = append(errs, &ConflictError{Cluster: a.cluster, Objects: conflicts, Err: firstConf})
		}
		return cs, errors.Join(append(errs, werr)...)
	}

	if len(decoded) == 0 && !a.opts.PruneEmpty {
		return cs, nil
	}
	for _, e := range inv {
		if _, ok := applied[e.id()]; ok {
			continue
		}
		c, keep, err := a.prune(ctx, e)
		if c.Action != "" {
			cs = append(cs, c)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: prune %s: %w", a.cluster, e.id(), err))
		}
		if keep {
			applied[e.id()] = e
		}
	}
	errs = append(errs, a.writeInventory(ctx, migration, inv, applied))
	return cs, errors.Join(errs...)
}

// isContainer reports whether other objects may need id to exist first.
func isContainer(id ObjectID) bool {
	return (id.Group == "" && id.Kind == "Namespace") ||
		(id.Group == "apiextensions.k8s.io" && id.Kind == "CustomResourceDefinition")
}

// applyOne applies o. sameIntent says the inventory recorded the same
// desired bytes last time, so any live difference is drift.
func (a *Applier) applyOne(ctx context.Context, o *object, sameIntent bool) (Change, error) {
	c := Change{ID: o.id, Partial: o.partial}
	var live *unstructured.Unstructured
	err := a.call(ctx, func(ctx context.Context) error {
		var err error
		live, err = o.res.Get(ctx, o.id.Name, metav1.GetOptions{})
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return c, err
	}
	if live == nil && o.partial {
		c.Action = ActionSkipped
		c.Reason = fmt.Sprintf("Service %s/%s does not exist; ferry never creates it", o.id.Namespace, o.id.Name)
		return c, nil
	}

	force := a.opts.ForceConflicts && !o.partial
	dry, err := a.apply(ctx, o, force, true)
	if err != nil && apierrors.IsConflict(err) && !force && !o.partial && onlyUpdateManagers(err) {
		// A hand edit (kubectl edit/patch) took the field over: drift.
		force, c.Drift = true, true
		dry, err = a.apply(ctx, o, true, true)
	}
	if err != nil {
		if apierrors.IsConflict(err) {
			c.Action = ActionConflict
			c.Reason = err.Error()
		}
		return c, err
	}
	if live != nil && equalObjects(live, dry) {
		c.Action, c.Drift = ActionUnchanged, false
		return c, nil
	}
	if _, err := a.apply(ctx, o, force, false); err != nil {
		if apierrors.IsConflict(err) {
			c.Action = ActionConflict
			c.Reason = err.Error()
		}
		return c, err
	}
	if live == nil {
		c.Action = ActionCreated
		c.Drift = sameIntent
	} else {
		c.Action = ActionConfigured
		c.Drift = c.Drift || sameIntent
	}
	return c, nil
}

func (a *Applier) apply(ctx context.Context, o *object, force, dryRun bool) (*unstructured.Unstructured, error) {
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var out *unstructured.Unstructured
	err := a.call(ctx, func(ctx context.Context) error {
		var err error
		out, err = o.res.Apply(ctx, o.id.Name, o.u, opts)
		return err
	})
	return out, err
}

// conflictCause matches a conflict cause: an Update manager is printed
// with " using <apiVersion>", an Apply manager without (see
// k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager, printManager).
var conflictCause = regexp.MustCompile(`^conflict with "[^"]*"(?: with subresource "[^"]*")?( using .*)?$`)

// onlyUpdateManagers reports whether every conflict of err is with a
// manager whose operation was Update.
func onlyUpdateManagers(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Details == nil || len(st.Status().Details.Causes) == 0 {
		return false
	}
	for _, c := range st.Status().Details.Causes {
		m := conflictCause.FindStringSubmatch(c.Message)
		if m == nil || m[1] == "" {
			return false
		}
	}
	return true
}

// Normalize returns a copy of u without the fields the server maintains
// (managedFields, resourceVersion, uid, creationTimestamp, generation,
// status), for comparing and showing objects.
func Normalize(u *unstructured.Unstructured) *unstructured.Unstructured {
	u = u.DeepCopy()
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(u.Object, "metadata", "uid")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "generation")
	unstructured.RemoveNestedField(u.Object, "status")
	return u
}

func equalObjects(live, dry *unstructured.Unstructured) bool {
	return equality.Semantic.DeepEqual(Normalize(live).Object, Normalize(dry).Object)
}

// prune removes e from the cluster: deletes an object ferry manages, or
// releases ferry's fields of a partial Service. keep says e must stay in
// the inventory.
func (a *Applier) prune(ctx context.Context, e entry) (Change, bool, error) {
	c := Change{ID: e.id(), Partial: e.Partial}
	gv, err := schema.ParseGroupVersion(e.APIVersion)
	if err != nil {
		return c, false, err
	}
	res, err := a.resource(gv.WithKind(e.Kind), e.Namespace)
	if err != nil {
		return c, true, err
	}
	var live *unstructured.Unstructured
	err = a.call(ctx, func(ctx context.Context) error {
		var err error
		live, err = res.Get(ctx, e.Name, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return Change{}, false, nil
	}
	if err != nil {
		return c, true, err
	}
	if e.Partial {
		// Apply ferry's intent as "nothing": the server drops the fields
		// ferry alone owned and leaves the rest of the Service alone.
		empty := &unstructured.Unstructured{}
		empty.SetAPIVersion(e.APIVersion)
		empty.SetKind(e.Kind)
		empty.SetNamespace(e.Namespace)
		empty.SetName(e.Name)
		err := a.call(ctx, func(ctx context.Context) error {
			_, err := res.Apply(ctx, e.Name, empty, metav1.ApplyOptions{FieldManager: FieldManager})
			return err
		})
		if err != nil {
			return c, true, err
		}
		c.Action = ActionPruned
		c.Reason = "released ferry's labels and annotations"
		return c, false, nil
	}
	if isContainer(c.ID) {
		// Deleting a Namespace or a CRD deletes everything in it, ferry's
		// or not (invariant 5): leave it to a person.
		c.Action = ActionSkipped
		c.Reason = "a " + c.ID.Kind + " is never pruned: deleting it deletes everything in it"
		return c, false, nil
	}
	if live.GetLabels()[renderer.LabelManagedBy] != "ferry" {
		c.Action = ActionSkipped
		c.Reason = "not labelled " + renderer.LabelManagedBy + ": ferry; left in place"
		return c, false, nil
	}
	uid := live.GetUID()
	err = a.call(ctx, func(ctx context.Context) error {
		return res.Delete(ctx, e.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return c, true, err
	}
	c.Action = ActionPruned
	return c, false, nil
}

// entry is one inventory record.
type entry struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Partial    bool   `json:"partial,omitempty"`
	// Hash of the rendered document last applied, to tell drift from a
	// change of plan.
	Hash string `json:"hash"`
}

func (e entry) id() ObjectID {
	gv, _ := schema.ParseGroupVersion(e.APIVersion)
	return ObjectID{Group: gv.Group, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}

const inventoryKey = "objects"

// InventoryName returns the name of migration's inventory ConfigMap.
func InventoryName(migration string) string { return "ferry-inventory-" + migration }

func (a *Applier) readInventory(ctx context.Context, migration string) ([]entry, error) {
	var cm *corev1.ConfigMap
	err := a.call(ctx, func(ctx context.Context) error {
		var err error
		cm, err = a.kube.CoreV1().ConfigMaps(InventoryNamespace).Get(ctx, InventoryName(migration), metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster %s: read inventory of %s: %w", a.cluster, migration, err)
	}
	var inv []entry
	if s := cm.Data[inventoryKey]; s != "" {
		if err := json.Unmarshal([]byte(s), &inv); err != nil {
			return nil, fmt.Errorf("cluster %s: read inventory of %s: %w", a.cluster, migration, err)
		}
	}
	return inv, nil
}

// Inventory returns the IDs in migration's inventory, sorted.
func (a *Applier) Inventory(ctx context.Context, migration string) ([]ObjectID, error) {
	inv, err := a.readInventory(ctx, migration)
	if err != nil {
		return nil, err
	}
	ids := make([]ObjectID, len(inv))
	for i, e := range inv {
		ids[i] = e.id()
	}
	return ids, nil
}

// writeInventory stores next when it differs from prev (no write in
// steady state), creating ferry-system when absent.
func (a *Applier) writeInventory(ctx context.Context, migration string, prev []entry, next map[ObjectID]entry) error {
	list := make([]entry, 0, len(next))
	for _, e := range next {
		list = append(list, e)
	}
	slices.SortFunc(list, func(x, y entry) int { return strings.Compare(x.id().String(), y.id().String()) })
	if slices.Equal(list, prev) && prev != nil {
		return nil
	}
	if len(list) == 0 && len(prev) == 0 {
		return nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := a.ensureNamespace(ctx); err != nil {
		return err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      InventoryName(migration),
			"namespace": InventoryNamespace,
			"labels": map[string]any{
				renderer.LabelManagedBy: "ferry",
				renderer.LabelMigration: migration,
			},
		},
		"data": map[string]any{inventoryKey: string(b)},
	}}
	res := a.dyn.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(InventoryNamespace)
	err = a.call(ctx, func(ctx context.Context) error {
		_, err := res.Apply(ctx, InventoryName(migration), cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster %s: write inventory of %s: %w", a.cluster, migration, err)
	}
	return nil
}

func (a *Applier) ensureNamespace(ctx context.Context) error {
	return a.call(ctx, func(ctx context.Context) error {
		_, err := a.kube.CoreV1().Namespaces().Get(ctx, InventoryNamespace, metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster %s: namespace %s: %w", a.cluster, InventoryNamespace, err)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: InventoryNamespace}}
		if _, err := a.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cluster %s: create namespace %s: %w", a.cluster, InventoryNamespace, err)
		}
		return nil
	})
}

// Ready reports whether the Service namespace/service exists and has at
// least one endpoint whose conditions.ready is true in its
// discovery.k8s.io/v1 EndpointSlices; when not, the reason says why. An
// endpoint with ready unset is not counted: traffic only goes to
// endpoints known to be ready.
func (a *Applier) Readiness(ctx context.Context, namespace, service string) plans.Readiness {
	err := a.call(ctx, func(ctx context.Context) error {
		_, err := a.kube.CoreV1().Services(namespace).Get(ctx, service, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return plans.Readiness{Reason: fmt.Sprintf("cluster %s: Service %s/%s does not exist", a.cluster, namespace, service)}
	}
	if err != nil {
		return plans.Readiness{Unknown: true, Reason: fmt.Sprintf("cluster %s: readiness unknown: get Service %s/%s: %v", a.cluster, namespace, service, err)}
	}
	var ready, total int
	err = a.call(ctx, func(ctx context.Context) error {
		list, err := a.kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
			LabelSelector: "kubernetes.io/service-name=" + service,
		})
		if err != nil {
			return err
		}
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				total++
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		return nil
	})
	if err != nil {
		return plans.Readiness{Unknown: true, Reason: fmt.Sprintf("cluster %s: readiness unknown: list EndpointSlices of Service %s/%s: %v", a.cluster, namespace, service, err)}
	}
	if ready == 0 {
		return plans.Readiness{Reason: fmt.Sprintf("cluster %s: Service %s/%s has no ready endpoints (%d endpoints in its EndpointSlices)", a.cluster, namespace, service, total)}
	}
	return plans.Readiness{Ready: true, Reason: fmt.Sprintf("cluster %s: Service %s/%s has %d ready endpoints", a.cluster, namespace, service, ready)}
}

// Ready reports whether namespace/service exists with ready endpoints, and
// why not.
func (a *Applier) Ready(ctx context.Context, namespace, service string) (bool, string) {
	r := a.Readiness(ctx, namespace, service)
	return r.Ready, r.Reason
}

// Diff is an object's live state and what applying it would make it.
type Diff struct {
	ID ObjectID
	// Live is nil when the object does not exist.
	Live, Desired *unstructured.Unstructured
	// Skipped explains why there is no Desired (a missing partial Service).
	Skipped string
}

// Diff dry-runs objs and returns, for each, the live object and the
// server's dry-run result, both normalized. It writes nothing.
func (a *Applier) Diff(ctx context.Context, objs []renderer.Object) ([]Diff, error) {
	out := make([]Diff, 0, len(objs))
	for _, ro := range objs {
		o, err := a.decode(ro)
		if err != nil {
			return out, err
		}
		d := Diff{ID: o.id}
		err = a.call(ctx, func(ctx context.Context) error {
			live, err := o.res.Get(ctx, o.id.Name, metav1.GetOptions{})
			if err == nil {
				d.Live = Normalize(live)
			}
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("cluster %s: get %s: %w", a.cluster, o.id, err)
		}
		if d.Live == nil && o.partial {
			d.Skipped = "Service does not exist; ferry never creates it"
			out = append(out, d)
			continue
		}
		dry, err := a.apply(ctx, o, a.opts.ForceConflicts && !o.partial, true)
		if err != nil && apierrors.IsConflict(err) && !o.partial && onlyUpdateManagers(err) {
			dry, err = a.apply(ctx, o, true, true)
		}
		if err != nil {
			return out, fmt.Errorf("cluster %s: dry-run apply %s: %w", a.cluster, o.id, err)
		}
		d.Desired = Normalize(dry)
		out = append(out, d)
	}
	return out, nil
}

// PruneDiff returns what an Apply of objs, migration's complete render for
// this cluster, would prune: objects of the inventory missing from objs,
// with Desired nil for an object that would be deleted and the dry-run
// result for a partial Service whose ferry fields would be released. It
// writes nothing and follows Apply's rules: nothing on an empty render
// unless Options.PruneEmpty, nothing not labelled as managed by ferry.
func (a *Applier) PruneDiff(ctx context.Context, migration string, objs []renderer.Object) ([]Diff, error) {
	if len(objs) == 0 && !a.opts.PruneEmpty {
		return nil, nil
	}
	keep := make(map[ObjectID]bool, len(objs))
	for _, ro := range objs {
		o, err := a.decode(ro)
		if err != nil {
			return nil, err
		}
		keep[o.id] = true
	}
	inv, err := a.readInventory(ctx, migration)
	if err != nil {
		return nil, err
	}
	var out []Diff
	for _, e := range inv {
		if keep[e.id()] {
			continue
		}
		gv, err := schema.ParseGroupVersion(e.APIVersion)
		if err != nil {
			return out, fmt.Errorf("cluster %s: inventory of %s: %w", a.cluster, migration, err)
		}
		res, err := a.resource(gv.WithKind(e.Kind), e.Namespace)
		if err != nil {
			return out, fmt.Errorf("cluster %s: %s: %w", a.cluster, e.id(), err)
		}
		var live *unstructured.Unstructured
		err = a.call(ctx, func(ctx context.Context) error {
			var err error
			live, err = res.Get(ctx, e.Name, metav1.GetOptions{})
			return err
		})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("cluster %s: get %s: %w", a.cluster, e.id(), err)
		}
		d := Diff{ID: e.id(), Live: Normalize(live)}
		switch {
		case e.Partial:
			empty := &unstructured.Unstructured{}
			empty.SetAPIVersion(e.APIVersion)
			empty.SetKind(e.Kind)
			empty.SetNamespace(e.Namespace)
			empty.SetName(e.Name)
			err := a.call(ctx, func(ctx context.Context) error {
				dry, err := res.Apply(ctx, e.Name, empty, metav1.ApplyOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}})
				if err == nil {
					d.Desired = Normalize(dry)
				}
				return err
			})
			if err != nil {
				return out, fmt.Errorf("cluster %s: dry-run release %s: %w", a.cluster, e.id(), err)
			}
		case isContainer(d.ID) || live.GetLabels()[renderer.LabelManagedBy] != "ferry":
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// Services lists the Services of sel.Namespace matching sel.MatchLabels,
// except ferry's own and mesh mirrors, as plan services.
func (a *Applier) Services(ctx context.Context, sel *plans.Selector) ([]*plans.Service, error) {
	var list *corev1.ServiceList
	err := a.call(ctx, func(ctx context.Context) error {
		var err error
		list, err = a.kube.CoreV1().Services(sel.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel.MatchLabels).String()})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: list services in %s: %w", a.cluster, sel.Namespace, err)
	}
	var out []*plans.Service
	for _, s := range list.Items {
		if s.Labels[renderer.LabelManagedBy] == "ferry" || s.Labels["mirror.linkerd.io/mirrored-service"] != "" || len(s.Spec.Ports) == 0 {
			continue
		}
		p := s.Spec.Ports[0]
		svc := &plans.Service{Namespace: s.Namespace, Name: s.Name, Port: int(p.Port), PodSelector: s.Spec.Selector}
		if p.TargetPort.Type == intstr.Int && int(p.TargetPort.IntVal) != svc.Port && p.TargetPort.IntVal != 0 {
			svc.TargetPort = int(p.TargetPort.IntVal)
		}
		out = append(out, svc)
	}
	slices.SortFunc(out, func(x, y *plans.Service) int { return strings.Compare(x.Ref(), y.Ref()) })
	return out, nil
}
