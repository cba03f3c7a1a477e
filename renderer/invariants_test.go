package renderer

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// The tests in this file read the rendered objects the way the meshes do
// and check the invariants of DESIGN.md on them: every split's weights sum
// to 100, the to side gets exactly the step's weight, and following any
// backend across the two clusters ends at pods, never at a split.

// split is a rendered traffic split.
type split struct {
	kind, namespace, apex string
	backends              []splitBackend
	mirror                *splitBackend // mirror target, if any
}

type splitBackend struct {
	kind   string // "Service", "ServiceImport" or "subset"
	name   string
	weight int
}

// world is the rendered objects of every cluster.
type world struct {
	provider plans.Provider
	clusters map[string]*clusterWorld
}

type clusterWorld struct {
	name      string
	services  map[string]parsed // namespace/name
	splits    map[string]*split // namespace/apex
	sliceExp  map[string]bool   // KubeSlice ServiceExports, namespace/name
	mcsExp    map[string]bool   // MCS ServiceExports, namespace/name
	drSubsets map[string]map[string]string
}

func newWorld(t *testing.T, res *Result, p plans.Provider) *world {
	t.Helper()
	w := &world{provider: p, clusters: map[string]*clusterWorld{}}
	for _, c := range res.Clusters {
		cw := &clusterWorld{name: c.Name, services: map[string]parsed{}, splits: map[string]*split{},
			sliceExp: map[string]bool{}, mcsExp: map[string]bool{}, drSubsets: map[string]map[string]string{}}
		w.clusters[c.Name] = cw
		for _, o := range parseObjects(t, c) {
			key := o.Namespace + "/" + o.Name
			switch o.Kind {
			case "Service":
				cw.services[key] = o
			case "ServiceExport":
				if strings.HasPrefix(o.APIVersion, "networking.kubeslice.io/") {
					cw.sliceExp[key] = true
				} else {
					cw.mcsExp[key] = true
				}
			case "TrafficSplit":
				s := &split{kind: o.Kind, namespace: o.Namespace, apex: str(dig(o.m, "spec", "service"))}
				for _, b := range list(dig(o.m, "spec", "backends")) {
					s.backends = append(s.backends, splitBackend{"Service", str(dig(b, "service")), num(dig(b, "weight"))})
				}
				w.addSplit(t, cw, s)
			case "HTTPRoute", "GRPCRoute":
				s := &split{kind: o.Kind, namespace: o.Namespace, apex: str(dig(o.m, "spec", "parentRefs", 0, "name"))}
				if k := str(dig(o.m, "spec", "parentRefs", 0, "kind")); k != "Service" || dig(o.m, "spec", "parentRefs", 0, "group") != "" {
					t.Errorf("cluster %s: %s %s: parentRef is %s (group %v), want a core Service", c.Name, o.Kind, key, k, dig(o.m, "spec", "parentRefs", 0, "group"))
				}
				rules := list(dig(o.m, "spec", "rules"))
				if len(rules) != 1 {
					t.Fatalf("cluster %s: %s %s: %d rules, want one catch-all rule", c.Name, o.Kind, key, len(rules))
				}
				if o.Kind == "HTTPRoute" && (str(dig(rules[0], "matches", 0, "path", "type")) != "PathPrefix" || str(dig(rules[0], "matches", 0, "path", "value")) != "/") {
					t.Errorf("cluster %s: HTTPRoute %s has no catch-all PathPrefix / match", c.Name, key)
				}
				if o.Kind == "GRPCRoute" && dig(rules[0], "matches") != nil {
					t.Errorf("cluster %s: GRPCRoute %s: a catch-all rule has no matches", c.Name, key)
				}
				for _, b := range list(dig(rules[0], "backendRefs")) {
					s.backends = append(s.backends, splitBackend{kindOf(b), str(dig(b, "name")), num(dig(b, "weight"))})
				}
				for _, f := range list(dig(rules[0], "filters")) {
					if str(dig(f, "type")) == "RequestMirror" {
						b := dig(f, "requestMirror", "backendRef")
						s.mirror = &splitBackend{kind: kindOf(b), name: str(dig(b, "name")), weight: num(dig(f, "requestMirror", "percent"))}
					}
				}
				w.addSplit(t, cw, s)
			case "VirtualService":
				host := str(dig(o.m, "spec", "hosts", 0))
				s := &split{kind: o.Kind, namespace: o.Namespace, apex: strings.Split(host, ".")[0]}
				http := dig(o.m, "spec", "http", 0)
				for _, r := range list(dig(http, "route")) {
					if str(dig(r, "destination", "host")) != host {
						t.Errorf("cluster %s: VirtualService %s routes to another host", c.Name, key)
					}
					s.backends = append(s.backends, splitBackend{"subset", str(dig(r, "destination", "subset")), num(dig(r, "weight"))})
				}
				if m := dig(http, "mirror"); m != nil {
					s.mirror = &splitBackend{kind: "subset", name: str(dig(m, "subset")), weight: num(dig(http, "mirrorPercentage", "value"))}
				}
				w.addSplit(t, cw, s)
			case "DestinationRule":
				subsets := map[string]string{}
				for _, s := range list(dig(o.m, "spec", "subsets")) {
					subsets[str(dig(s, "name"))] = str(dig(s, "labels", "topology.istio.io/cluster"))
				}
				cw.drSubsets[o.Namespace+"/"+strings.Split(str(dig(o.m, "spec", "host")), ".")[0]] = subsets
			}
		}
	}
	return w
}

func kindOf(b any) string {
	if k := str(dig(b, "kind")); k != "" {
		return k
	}
	return "Service"
}

func (w *world) addSplit(t *testing.T, c *clusterWorld, s *split) {
	t.Helper()
	key := s.namespace + "/" + s.apex
	if c.splits[key] != nil {
		t.Errorf("cluster %s: two splits for %s (%s and %s); a service gets one split", c.name, key, c.splits[key].kind, s.kind)
	}
	c.splits[key] = s
}

// resolve follows backend b of a split on apex in cluster c to the cluster
// whose pods serve it, failing if the way passes through a split.
func (w *world) resolve(c *clusterWorld, ns, apex string, b splitBackend) (string, error) {
	isSplit := func(cl *clusterWorld, name string) bool { return cl.splits[ns+"/"+name] != nil }
	selects := func(o parsed) bool { return dig(o.m, "spec", "selector") != nil }
	switch b.kind {
	case "subset":
		cl := w.clusters[c.name].drSubsets[ns+"/"+apex][b.name]
		if cl == "" {
			return "", fmt.Errorf("subset %s has no DestinationRule subset", b.name)
		}
		return cl, nil // the client sidecar picks a pod of that cluster
	case "ServiceImport":
		var from []string
		for _, p := range w.clusters {
			if p.mcsExp[ns+"/"+b.name] {
				svc, ok := p.services[ns+"/"+b.name]
				if !ok || !selects(svc) {
					return "", fmt.Errorf("ServiceImport %s: the export in %s is not of a Service selecting pods", b.name, p.name)
				}
				if isSplit(p, b.name) {
					return "", fmt.Errorf("ServiceImport %s: the exported Service in %s has a split: loop", b.name, p.name)
				}
				from = append(from, p.name)
			}
		}
		if len(from) != 1 {
			return "", fmt.Errorf("ServiceImport %s is exported by %v, want exactly one cluster", b.name, from)
		}
		return from[0], nil
	case "Service":
	default:
		return "", fmt.Errorf("backend kind %s", b.kind)
	}
	if b.name == apex {
		// SMI and GAMMA: the split's own Service as backend means its
		// endpoints in this cluster.
		return c.name, nil
	}
	if svc, ok := c.services[ns+"/"+b.name]; ok {
		if isSplit(c, b.name) {
			return "", fmt.Errorf("backend %s is itself split in %s: loop", b.name, c.name)
		}
		if str(dig(svc.m, "spec", "type")) == "ExternalName" {
			host := str(dig(svc.m, "spec", "externalName"))
			exp, ok := strings.CutSuffix(host, "."+ns+".svc.slice.local")
			if !ok {
				return "", fmt.Errorf("ExternalName %s points at %s, not a slice name", b.name, host)
			}
			var from []string
			for _, p := range w.clusters {
				if p.sliceExp[ns+"/"+exp] {
					from = append(from, p.name)
				}
			}
			if len(from) != 1 {
				return "", fmt.Errorf("slice name %s is exported by %v, want exactly one cluster", host, from)
			}
			return from[0], nil // KubeSlice exports select pods
		}
		if !selects(svc) {
			return "", fmt.Errorf("backend %s in %s selects no pods", b.name, c.name)
		}
		if w.provider == plans.Istio || w.provider == plans.GatewayAPI {
			// These meshes merge Services of one name across clusters.
			for _, p := range w.clusters {
				if _, dup := p.services[ns+"/"+b.name]; dup && p != c {
					return "", fmt.Errorf("backend %s is defined in %s and %s: the mesh merges them", b.name, c.name, p.name)
				}
			}
		}
		return c.name, nil
	}
	for _, p := range w.clusters {
		if p == c {
			continue
		}
		// A Linkerd mirror "<exported>-<peer>".
		if x, ok := strings.CutSuffix(b.name, "-"+p.name); ok {
			if svc, ok := p.services[ns+"/"+x]; ok {
				switch str(dig(svc.m, "metadata", "labels", linkerdExportLabel)) {
				case "true":
					// Through the peer's gateway, which routes to x like
					// any client would.
					if isSplit(p, x) {
						return "", fmt.Errorf("mirror %s enters %s through its gateway to %s, which is split there: loop", b.name, p.name, x)
					}
					if !selects(svc) {
						return "", fmt.Errorf("mirror %s: %s in %s selects no pods", b.name, x, p.name)
					}
					return p.name, nil
				case "remote-discovery":
					// The client proxy connects to the peer's pods.
					return p.name, nil
				}
			}
		}
		// A Service only the peer defines, seen through merged discovery.
		if svc, ok := p.services[ns+"/"+b.name]; ok && (w.provider == plans.Istio || w.provider == plans.GatewayAPI) {
			if isSplit(p, b.name) {
				return "", fmt.Errorf("backend %s is split in %s: loop", b.name, p.name)
			}
			if !selects(svc) {
				return "", fmt.Errorf("backend %s in %s selects no pods", b.name, p.name)
			}
			return p.name, nil
		}
	}
	return "", fmt.Errorf("backend %s resolves to nothing", b.name)
}

// checkSplits checks every split of a result rendered at step.
func checkSplits(t *testing.T, res *Result, m *plans.Migration, step plans.Step) {
	t.Helper()
	w := newWorld(t, res, m.Provider)
	n := 0
	for _, c := range w.clusters {
		for key, s := range c.splits {
			n++
			sum := 0
			byCluster := map[string]int{}
			for _, b := range s.backends {
				sum += b.weight
				cl, err := w.resolve(c, s.namespace, s.apex, b)
				if err != nil {
					t.Errorf("cluster %s: %s %s: %v", c.name, s.kind, key, err)
					continue
				}
				byCluster[cl] += b.weight
			}
			if sum != 100 {
				t.Errorf("cluster %s: %s %s: weights sum to %d", c.name, s.kind, key, sum)
			}
			if len(s.backends) != 2 || byCluster[m.To] != step.Weight || byCluster[m.From] != 100-step.Weight {
				t.Errorf("cluster %s: %s %s: weights by cluster %v, want %s: %d, %s: %d", c.name, s.kind, key, byCluster, m.To, step.Weight, m.From, 100-step.Weight)
			}
			if step.Mirror > 0 {
				if s.mirror == nil {
					t.Errorf("cluster %s: %s %s: no mirror at %s", c.name, s.kind, key, step)
					continue
				}
				cl, err := w.resolve(c, s.namespace, s.apex, *s.mirror)
				if err != nil || cl != m.To || s.mirror.weight != step.Mirror {
					t.Errorf("cluster %s: %s %s: mirror to %s (%v) at %d%%, want %s at %d%%", c.name, s.kind, key, cl, err, s.mirror.weight, m.To, step.Mirror)
				}
			} else if s.mirror != nil {
				t.Errorf("cluster %s: %s %s: mirror at %s", c.name, s.kind, key, step)
			}
		}
	}
	want := 0
	switch m.Provider {
	case plans.Cilium, plans.ExternalDNS:
	default:
		want = 2 * len(m.Services())
	}
	if n != want {
		t.Errorf("%d splits rendered, want %d", n, want)
	}
}

// TestNoLoopsAndWeights renders every provider at every step and follows
// every backend of every split across the two clusters.
func TestNoLoopsAndWeights(t *testing.T) {
	for _, v := range variants {
		repo := testRepo(v)
		m := repo.Migrations[0]
		for i, step := range m.Steps {
			t.Run(fmt.Sprintf("%s/%s", v.name, step), func(t *testing.T) {
				res, err := Render(repo, allAt(repo, i))
				if err != nil {
					t.Fatal(err)
				}
				checkSplits(t, res, m, step)
				checkAnnotations(t, res, m, step)
			})
		}
	}
}

// TestWeightsRandom checks the weights of every split of random plans.
func TestWeightsRandom(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		repo, st := randomRepo(rand.New(rand.NewSource(seed)), 40)
		res, err := Render(repo, st)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Clusters {
			for _, o := range parseObjects(t, c) {
				var ws []any
				switch o.Kind {
				case "TrafficSplit":
					ws = list(dig(o.m, "spec", "backends"))
				case "HTTPRoute", "GRPCRoute":
					ws = list(dig(o.m, "spec", "rules", 0, "backendRefs"))
				case "VirtualService":
					ws = list(dig(o.m, "spec", "http", 0, "route"))
				default:
					continue
				}
				sum := 0
				for _, b := range ws {
					sum += num(dig(b, "weight"))
				}
				if sum != 100 {
					t.Errorf("seed %d: cluster %s: %s %s/%s: weights sum to %d", seed, c.Name, o.Kind, o.Namespace, o.Name, sum)
				}
			}
		}
	}
}

// checkAnnotations checks the providers that weight without a split.
func checkAnnotations(t *testing.T, res *Result, m *plans.Migration, step plans.Step) {
	t.Helper()
	switch m.Provider {
	case plans.ExternalDNS:
		for _, s := range m.Services() {
			for _, prefix := range externalDNSPrefixes {
				sum := 0
				hosts := map[string]bool{}
				for _, c := range res.Clusters {
					o := findObject(t, c, "Service", s.Namespace, s.Name)
					if !o.Partial {
						t.Errorf("cluster %s: Service %s is not partial", c.Name, s.Ref())
					}
					wgt := atoi(t, str(dig(o.m, "metadata", "annotations", prefix+"aws-weight")))
					want := step.Weight
					if c.Name == m.From {
						want = 100 - step.Weight
					}
					if wgt != want {
						t.Errorf("cluster %s: %s: %saws-weight %d, want %d", c.Name, s.Ref(), prefix, wgt, want)
					}
					if id := str(dig(o.m, "metadata", "annotations", prefix+"set-identifier")); id != c.Name {
						t.Errorf("cluster %s: %s: set-identifier %q", c.Name, s.Ref(), id)
					}
					hosts[str(dig(o.m, "metadata", "annotations", prefix+"hostname"))] = true
					sum += wgt
				}
				if sum != 100 || len(hosts) != 1 {
					t.Errorf("%s: %s weights sum to %d over hostnames %v", s.Ref(), prefix, sum, hosts)
				}
			}
		}
	case plans.Cilium:
		for _, s := range m.Services() {
			servers := 0
			for _, c := range res.Clusters {
				o := findObject(t, c, "Service", s.Namespace, s.Name)
				a := func(k string) string { return str(dig(o.m, "metadata", "annotations", k)) }
				if a(ciliumGlobal) != "true" || !o.Partial {
					t.Errorf("cluster %s: %s is not a partial global service", c.Name, s.Ref())
				}
				if a(ciliumShared) == "true" {
					servers++
					// The cluster that serves the others prefers itself.
					if a(ciliumAffinity) != "local" {
						t.Errorf("cluster %s: %s shared with affinity %s", c.Name, s.Ref(), a(ciliumAffinity))
					}
					if want := map[bool]string{true: m.To, false: m.From}[step.Weight == 100]; c.Name != want {
						t.Errorf("%s: %s shares at weight %d, want %s", s.Ref(), c.Name, step.Weight, want)
					}
				}
			}
			if servers != 1 {
				t.Errorf("%s: %d clusters share endpoints, want 1", s.Ref(), servers)
			}
		}
	}
}

func findObject(t *testing.T, c *ClusterOutput, kind, ns, name string) parsed {
	t.Helper()
	for _, o := range parseObjects(t, c) {
		if o.Kind == kind && o.Namespace == ns && o.Name == name {
			return o
		}
	}
	t.Fatalf("cluster %s: no %s %s/%s", c.Name, kind, ns, name)
	return parsed{}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// TestLabels checks the labels of owned and partial objects.
func TestLabels(t *testing.T) {
	for _, v := range variants {
		repo := testRepo(v)
		res, err := Render(repo, allAt(repo, 1))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Clusters {
			for _, o := range parseObjects(t, c) {
				labels, _ := dig(o.m, "metadata", "labels").(map[string]any)
				ann, _ := dig(o.m, "metadata", "annotations").(map[string]any)
				id := fmt.Sprintf("%s: cluster %s: %s %s/%s", v.name, c.Name, o.Kind, o.Namespace, o.Name)
				if o.Migration != repo.Migrations[0].Name || o.Service == "" {
					t.Errorf("%s: migration %q service %q", id, o.Migration, o.Service)
				}
				if o.Partial {
					if _, ok := labels[LabelManagedBy]; ok {
						t.Errorf("%s: partial object has %s", id, LabelManagedBy)
					}
					if ann[AnnotationPartial] != "true" {
						t.Errorf("%s: partial object lacks %s", id, AnnotationPartial)
					}
					for k := range o.m {
						if k != "apiVersion" && k != "kind" && k != "metadata" {
							t.Errorf("%s: partial object has %s", id, k)
						}
					}
					continue
				}
				want := map[string]string{LabelManagedBy: "ferry", LabelMigration: o.Migration, LabelService: strings.Replace(o.Service, "/", ".", 1)}
				for k, v := range want {
					if labels[k] != v {
						t.Errorf("%s: label %s = %v, want %s", id, k, labels[k], v)
					}
				}
			}
		}
	}
}

// TestLoopCheckerFindsLoops makes sure the checker above would catch the
// configuration of linkerd/linkerd2#6569: the apex exported through the
// gateway and split in both clusters.
func TestLoopCheckerFindsLoops(t *testing.T) {
	repo := testRepo(variants[2]) // linkerd remote-discovery: apex exported
	res, err := Render(repo, allAt(repo, 2))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, res, plans.Linkerd)
	for _, c := range w.clusters {
		for _, svc := range c.services {
			dig(svc.m, "metadata", "labels").(map[string]any)[linkerdExportLabel] = "true"
		}
	}
	c := w.clusters["dc1"]
	s := c.splits["shop/web"]
	_, err = w.resolve(c, "shop", "web", s.backends[1])
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("resolve of %s through the gateway: %v; want a loop", s.backends[1].name, err)
	}
}
