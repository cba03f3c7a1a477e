package renderer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/plans"
)

// Result is the render of a plan repository: one output per cluster,
// sorted by name. A Result and everything it holds may be shared with
// later renders by the same Renderer; treat it as read-only.
type Result struct {
	Clusters []*ClusterOutput
}

// Cluster returns the output for the named cluster, or nil.
func (r *Result) Cluster(name string) *ClusterOutput {
	for _, c := range r.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ClusterOutput is what ferry renders for one cluster.
type ClusterOutput struct {
	Name string
	// Files is the Kustomize overlay, by slash path relative to the
	// overlay's root: kustomization.yaml and the resource files it names.
	// When the plan repository customizes the cluster, ferry's generated
	// overlay is under ferry/ and the user's files are at the root.
	Files map[string][]byte
	// Manifests is the build of the overlay, multi-document YAML
	// byte-identical to `kustomize build` of Files.
	Manifests []byte
	// Objects are the documents of Manifests, in the same order.
	Objects []Object
	// Customized reports whether the plan repository's overlays/<cluster>/
	// was composed on top of ferry's overlay.
	Customized bool
}

// Object is one rendered Kubernetes object.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Migration and Service ("namespace/name") say which service of which
	// migration the object belongs to; both are empty for objects added by
	// the user's overlay.
	Migration string
	Service   string
	// Partial objects are Services ferry does not own: they carry only the
	// labels and annotations ferry sets. The applier must never create or
	// delete them, only apply (and later remove) those fields.
	Partial bool
	// YAML is the object's document in Manifests, without separator.
	YAML []byte
}

// Labels and annotations ferry sets.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	LabelMigration    = "ferry.dev/migration"
	LabelService      = "ferry.dev/service"
	AnnotationPartial = "ferry.dev/partial"
	managedByValue    = "ferry"
)

// Render renders repo with every service at the step given by steps. It is
// the stateless form of (*Renderer).Render.
func Render(repo *plans.Repository, steps plans.Steps) (*Result, error) {
	return New().Render(repo, steps)
}

// Renderer renders plan repositories, caching by content what it rendered
// before: each service's objects per cluster (a shard) and each cluster's
// assembled output. A render after a small change re-renders only the
// shards whose inputs changed and reassembles only the clusters they are
// in. A Renderer is safe for concurrent use; renders are serialized.
type Renderer struct {
	mu       sync.Mutex
	sc       *scalars
	gen      uint64
	shards   map[shardKey]*shard
	clusters map[string]*clusterEntry

	// viaKrusty builds every cluster with krusty instead of the fast path;
	// tests use it to prove both give the same bytes.
	viaKrusty bool
	// keepBodies keeps the objects' trees after encoding, for tests.
	keepBodies bool
}

// New returns a Renderer with an empty cache.
func New() *Renderer {
	return &Renderer{
		sc:       newScalars(),
		shards:   make(map[shardKey]*shard),
		clusters: make(map[string]*clusterEntry),
	}
}

// shardKey holds every input a shard's objects depend on.
type shardKey struct {
	mig       string // migration-level inputs
	svc       string // service-level inputs
	istioMode string // the wave's override
	weight    int
	mirror    int
	from      bool
}

// shard is one service's objects in one cluster.
type shard struct {
	migration string
	service   string // namespace/name
	path      string // resource file in the overlay
	objects   []*object
	file      []byte // the resource file
	gen       uint64
}

type clusterEntry struct {
	shards  []*shard
	overlay string // digest of the user's overlay files
	layout  *layout
	out     *ClusterOutput
}

// object is a rendered object before assembly.
type object struct {
	apiVersion, kind, namespace, name string
	partial                           bool
	// body is the object's tree; dropped once encoded unless the
	// Renderer keeps it for tests.
	body mapping
	// protect lists the fields a user overlay may not change.
	protect [][]string
	out     []byte // the object as krusty emits it
	key     sortKey
}

func (o *object) String() string {
	return o.apiVersion + " " + o.kind + " " + o.namespace + "/" + o.name
}

// Render renders repo with every service at the step given by steps.
func (r *Renderer) Render(repo *plans.Repository, steps plans.Steps) (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++

	perCluster := make(map[string][]*shard, len(repo.Clusters))
	for name := range repo.Clusters {
		perCluster[name] = nil
	}
	for _, m := range repo.Migrations {
		if err := r.renderMigration(repo, m, steps, perCluster); err != nil {
			return nil, err
		}
	}
	for name := range repo.Overlays {
		if _, ok := perCluster[name]; !ok {
			return nil, fmt.Errorf("overlays/%s: no cluster %q in the plan repository", name, name)
		}
	}

	names := make([]string, 0, len(perCluster))
	for name := range perCluster {
		names = append(names, name)
	}
	sort.Strings(names)

	res := &Result{Clusters: make([]*ClusterOutput, 0, len(names))}
	for _, name := range names {
		out, err := r.cluster(name, perCluster[name], repo.Overlays[name])
		if err != nil {
			return nil, err
		}
		res.Clusters = append(res.Clusters, out)
	}

	// Keep only what this render used, so memory stays bounded by one
	// repository's worth.
	for k, s := range r.shards {
		if s.gen != r.gen {
			delete(r.shards, k)
		}
	}
	for name := range r.clusters {
		if _, ok := perCluster[name]; !ok {
			delete(r.clusters, name)
		}
	}
	return res, nil
}

func (r *Renderer) renderMigration(repo *plans.Repository, m *plans.Migration, steps plans.Steps, perCluster map[string][]*shard) error {
	for _, c := range []string{m.From, m.To} {
		if _, ok := repo.Clusters[c]; !ok {
			return fmt.Errorf("migration %s: no cluster %q in the plan repository", m.Name, c)
		}
	}
	if m.From == m.To {
		return fmt.Errorf("migration %s: from and to are both %q", m.Name, m.From)
	}
	p, ok := providers[m.Provider]
	if !ok {
		return fmt.Errorf("migration %s: unknown provider %q", m.Name, m.Provider)
	}
	if len(m.Steps) == 0 {
		return fmt.Errorf("migration %s: no steps", m.Name)
	}
	mk := migrationKey(m)
	var sb strings.Builder
	for _, w := range m.Waves {
		for _, svc := range w.Services {
			ref := svc.Ref()
			idx := steps[plans.ServiceID{Migration: m.Name, Service: ref}]
			if idx < 0 || idx >= len(m.Steps) {
				return fmt.Errorf("migration %s: service %s: step %d out of range (the migration has %d steps)", m.Name, ref, idx, len(m.Steps))
			}
			step := m.Steps[idx]
			sk := serviceKey(&sb, svc)
			for _, from := range []bool{true, false} {
				key := shardKey{mig: mk, svc: sk, istioMode: w.IstioMode, weight: step.Weight, mirror: step.Mirror, from: from}
				sh, ok := r.shards[key]
				if !ok {
					var err error
					sh, err = r.renderShard(p, m, w, svc, step, from)
					if err != nil {
						return err
					}
					r.shards[key] = sh
				}
				sh.gen = r.gen
				cluster := m.To
				if from {
					cluster = m.From
				}
				perCluster[cluster] = append(perCluster[cluster], sh)
			}
		}
	}
	return nil
}

func (r *Renderer) renderShard(p provider, m *plans.Migration, w *plans.Wave, svc *plans.Service, step plans.Step, from bool) (*shard, error) {
	s := &side{m: m, svc: svc, step: step, from: from, cluster: m.To, peer: m.From}
	if from {
		s.cluster, s.peer = m.From, m.To
	}
	s.istioMode = w.IstioMode
	if s.istioMode == "" {
		s.istioMode = m.Istio.Mode
	}
	if s.istioMode == "" {
		s.istioMode = "ambient"
	}
	wrap := func(err error) error {
		return fmt.Errorf("migration %s: service %s: cluster %s: %w", m.Name, svc.Ref(), s.cluster, err)
	}
	if step.Weight < 0 || step.Weight > 100 {
		return nil, wrap(fmt.Errorf("weight %d is not a percentage", step.Weight))
	}
	if step.Mirror < 0 || step.Mirror > 100 {
		return nil, wrap(fmt.Errorf("mirror %d is not a percentage", step.Mirror))
	}
	if step.Mirror > 0 && !m.Provider.CanMirror() {
		return nil, wrap(fmt.Errorf("provider %s cannot mirror traffic (step %s)", m.Provider, step))
	}
	if svc.Namespace == "" || svc.Name == "" {
		return nil, wrap(fmt.Errorf("service needs a namespace and a name"))
	}
	objs, err := p.render(s)
	if err != nil {
		return nil, wrap(err)
	}
	sh := &shard{
		migration: m.Name,
		service:   svc.Ref(),
		path:      m.Name + "/" + svc.Namespace + "." + svc.Name + ".yaml",
		objects:   objs,
	}
	var file []byte
	type span struct{ start, end int }
	spans := make([]span, len(objs))
	for i, o := range objs {
		if err := checkName(o.name); err != nil {
			return nil, wrap(fmt.Errorf("%s: %w", o, err))
		}
		o.key = makeSortKey(o.apiVersion, o.kind, o.namespace, o.name)
		if i > 0 {
			file = append(file, "---\n"...)
		}
		start := len(file)
		o.out, file, err = encodeAppend(r.sc, file, o.body)
		if err != nil {
			return nil, wrap(fmt.Errorf("%s: encode: %w", o, err))
		}
		spans[i] = span{start, len(file)}
		if !r.keepBodies {
			o.body = nil
		}
	}
	// Objects whose two encodings agree share the file's bytes.
	for i, o := range objs {
		if in := file[spans[i].start:spans[i].end]; bytes.Equal(in, o.out) {
			o.out = in[:len(in):len(in)]
		}
	}
	sh.file = file
	return sh, nil
}

// checkName refuses names the API server would: a generated name such as
// "<service>-<cluster>" can outgrow a DNS label.
func checkName(name string) error {
	if len(name) > 63 {
		return fmt.Errorf("name %q is longer than 63 characters; shorten the service or cluster name", name)
	}
	return nil
}

func migrationKey(m *plans.Migration) string {
	return strings.Join([]string{
		m.Name, m.From, m.To, string(m.Provider),
		m.Linkerd.Split, m.Linkerd.Export, m.Istio.Mode, m.GatewayAPI.Route,
		m.KubeSlice.Slice, m.ExternalDNS.Domain,
	}, "\x00")
}

func serviceKey(sb *strings.Builder, s *plans.Service) string {
	sb.Reset()
	sb.WriteString(s.Namespace)
	sb.WriteByte(0)
	sb.WriteString(s.Name)
	sb.WriteByte(0)
	sb.WriteString(strconv.Itoa(s.Port))
	sb.WriteByte(0)
	sb.WriteString(strconv.Itoa(s.TargetPort))
	sb.WriteByte(0)
	sb.WriteString(s.Hostname)
	sb.WriteByte(0)
	for _, a := range s.Aliases {
		sb.WriteString(a)
		sb.WriteByte(1)
	}
	sb.WriteByte(0)
	if len(s.PodSelector) > 0 {
		keys := make([]string, 0, len(s.PodSelector))
		for k := range s.PodSelector {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sb.WriteString(k)
			sb.WriteByte(2)
			sb.WriteString(s.PodSelector[k])
			sb.WriteByte(1)
		}
	}
	return sb.String()
}

// cluster assembles one cluster's output, reusing the last one when
// nothing it depends on changed.
func (r *Renderer) cluster(name string, shards []*shard, overlay map[string][]byte) (*ClusterOutput, error) {
	digest := overlayDigest(overlay)
	prev := r.clusters[name]
	if prev != nil && prev.overlay == digest && slices.Equal(prev.shards, shards) {
		return prev.out, nil
	}
	var lay *layout
	if prev != nil && prev.layout != nil && sameLayout(prev.shards, shards) {
		lay = prev.layout
	} else {
		var err error
		if lay, err = r.newLayout(name, shards); err != nil {
			return nil, err
		}
	}
	base, objs := assemble(name, shards, lay)
	var out *ClusterOutput
	var err error
	switch {
	case overlay != nil:
		out, err = customize(name, base.Files, objs, overlay)
	case r.viaKrusty:
		out, err = buildGenerated(name, base.Files, objs)
	default:
		out = base
	}
	if err != nil {
		return nil, err
	}
	r.clusters[name] = &clusterEntry{shards: shards, overlay: digest, out: out, layout: lay}
	return out, nil
}

func overlayDigest(files map[string][]byte) string {
	if files == nil {
		return ""
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%d:%s%d:", len(p), p, len(files[p]))
		h.Write(files[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

type objectRef struct {
	o  *object
	sh *shard
}

// layout is what a cluster's assembly depends on beyond the objects'
// bytes: the objects' order and the kustomization naming the shard files.
// It depends only on each shard's file path and object ids, so a change of
// weights reuses it and only the bytes are put together again.
type layout struct {
	order []pos // objects in kustomize's legacy order
	kust  []byte
}

// pos is an object's place in the cluster's shard list.
type pos struct{ shard, obj int32 }

// sameLayout reports whether two shard lists have the same files holding
// the same object ids in the same order.
func sameLayout(a, b []*shard) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x.path != y.path || len(x.objects) != len(y.objects) {
			return false
		}
		for j, o := range x.objects {
			if o.key != y.objects[j].key || o.apiVersion != y.objects[j].apiVersion {
				return false
			}
		}
	}
	return true
}

// newLayout sorts a cluster's objects and refuses two objects of the same
// id: kustomize would refuse to build them.
func (r *Renderer) newLayout(name string, shards []*shard) (*layout, error) {
	n := 0
	for _, sh := range shards {
		n += len(sh.objects)
	}
	order := make([]pos, 0, n)
	seen := make(map[objID]*shard, n)
	paths := make([]string, 0, len(shards))
	files := make(map[string]bool, len(shards))
	for si, sh := range shards {
		if files[sh.path] {
			return nil, fmt.Errorf("cluster %s: service %s of migration %s is rendered twice", name, sh.service, sh.migration)
		}
		files[sh.path] = true
		paths = append(paths, sh.path)
		for oi, o := range sh.objects {
			k := idOf(o.apiVersion, o.kind, o.namespace, o.name)
			if prev := seen[k]; prev != nil {
				return nil, fmt.Errorf("cluster %s: %s is rendered for both %s/%s and %s/%s; a service may be in one migration per cluster",
					name, o, prev.migration, prev.service, sh.migration, sh.service)
			}
			seen[k] = sh
			order = append(order, pos{int32(si), int32(oi)})
		}
	}
	slices.SortFunc(order, func(a, b pos) int {
		return shards[a.shard].objects[a.obj].key.compare(shards[b.shard].objects[b.obj].key)
	})
	sort.Strings(paths)
	kust, err := kustomization(r.sc, paths)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return &layout{order: order, kust: kust}, nil
}

// assemble is the fast path: it writes the overlay and the bytes krusty
// would build from it, without running krusty.
func assemble(name string, shards []*shard, lay *layout) (*ClusterOutput, []objectRef) {
	files := make(map[string][]byte, len(shards)+1)
	for _, sh := range shards {
		files[sh.path] = sh.file
	}
	files["kustomization.yaml"] = lay.kust
	size := 0
	objs := make([]objectRef, len(lay.order))
	for i, p := range lay.order {
		sh := shards[p.shard]
		objs[i] = objectRef{sh.objects[p.obj], sh}
		size += len(objs[i].o.out) + 4
	}
	manifests := make([]byte, 0, size)
	out := &ClusterOutput{Name: name, Files: files, Objects: make([]Object, len(objs))}
	for i, or := range objs {
		if i > 0 {
			manifests = append(manifests, "---\n"...)
		}
		start := len(manifests)
		manifests = append(manifests, or.o.out...)
		out.Objects[i] = or.object(manifests[start:len(manifests):len(manifests)])
	}
	out.Manifests = manifests
	return out, objs
}

func (or objectRef) object(yaml []byte) Object {
	o := or.o
	return Object{
		APIVersion: o.apiVersion, Kind: o.kind, Namespace: o.namespace, Name: o.name,
		Migration: or.sh.migration, Service: or.sh.service, Partial: o.partial,
		YAML: yaml,
	}
}

// kustomization returns ferry's kustomization.yaml naming the resource
// files.
func kustomization(sc *scalars, paths []string) ([]byte, error) {
	k := mapping{
		{"apiVersion", "kustomize.config.k8s.io/v1beta1"},
		{"kind", "Kustomization"},
	}
	if len(paths) > 0 {
		res := make(seq, len(paths))
		for i, p := range paths {
			res[i] = p
		}
		k = append(k, field{"resources", res})
	}
	_, in, err := encode(sc, k)
	if err != nil {
		return nil, fmt.Errorf("encode kustomization.yaml: %w", err)
	}
	return in, nil
}
