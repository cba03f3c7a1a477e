package renderer

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/ferry-dev/ferry/plans"
)

// provider renders one service on one side of a migration.
type provider interface {
	render(s *side) ([]*object, error)
}

var providers = map[plans.Provider]provider{
	plans.Linkerd:     linkerd{},
	plans.Istio:       istio{},
	plans.GatewayAPI:  gatewayAPI{},
	plans.KubeSlice:   kubeSlice{},
	plans.MCS:         mcs{},
	plans.Cilium:      cilium{},
	plans.ExternalDNS: externalDNS{},
}

// side is one service of a migration as seen from one of its two clusters.
type side struct {
	m    *plans.Migration
	svc  *plans.Service
	step plans.Step
	// from is true in the migration's from cluster.
	from          bool
	cluster, peer string
	// istioMode is the wave's mode, else the migration's, else "ambient".
	istioMode string
}

// toWeight is the share of traffic on the to side; fromWeight the rest.
func (s *side) toWeight() int   { return s.step.Weight }
func (s *side) fromWeight() int { return 100 - s.step.Weight }

// localWeight is the share this cluster's split keeps in the cluster;
// remoteWeight the share it sends to the peer.
func (s *side) localWeight() int {
	if s.from {
		return s.fromWeight()
	}
	return s.toWeight()
}

func (s *side) remoteWeight() int { return 100 - s.localWeight() }

// mirrorsLocal reports whether mirrored requests stay in this cluster: the
// mirror always copies to the to side.
func (s *side) mirrorsLocal() bool { return !s.from }

// port is the Service port routes send to.
func (s *side) port() (int, error) {
	if s.svc.Port <= 0 || s.svc.Port > 65535 {
		return 0, fmt.Errorf("port %d is not a port number", s.svc.Port)
	}
	return s.svc.Port, nil
}

// targetPort is the port the pods listen on.
func (s *side) targetPort() (int, error) {
	if s.svc.TargetPort == 0 {
		return s.port()
	}
	if s.svc.TargetPort < 0 || s.svc.TargetPort > 65535 {
		return 0, fmt.Errorf("targetPort %d is not a port number", s.svc.TargetPort)
	}
	return s.svc.TargetPort, nil
}

// podSelector is the service's pod selector, "app: <name>" by default.
func (s *side) podSelector() mapping {
	if len(s.svc.PodSelector) == 0 {
		return mapping{{"app", s.svc.Name}}
	}
	return stringMap(s.svc.PodSelector)
}

// serviceLabel is the value of ferry.dev/service: label values cannot hold
// a slash.
func (s *side) serviceLabel() string { return s.svc.Namespace + "." + s.svc.Name }

func stringMap(m map[string]string) mapping {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(mapping, len(keys))
	for i, k := range keys {
		out[i] = field{k, m[k]}
	}
	return out
}

// protectPaths lists the fields a user overlay may not change on an owned
// object: ferry's labels, the extra labels it sets, and the given fields.
// The lists are built once and shared by every object of a kind.
func protectPaths(extraLabels []string, fields ...[]string) [][]string {
	p := [][]string{
		{"metadata", "labels", LabelManagedBy},
		{"metadata", "labels", LabelMigration},
		{"metadata", "labels", LabelService},
	}
	for _, l := range extraLabels {
		p = append(p, []string{"metadata", "labels", l})
	}
	return append(p, fields...)
}

var (
	protectLabels = protectPaths(nil)
	protectSpec   = protectPaths(nil, []string{"spec"})
	protectRoute  = protectPaths(nil,
		[]string{"spec", "parentRefs"},
		[]string{"spec", "rules", "*", "backendRefs"},
		[]string{"spec", "rules", "*", "filters"},
		[]string{"spec", "rules", "*", "matches"})
	// A partial object carries ferry's labels and annotations and nothing
	// else, so an overlay may change none of them.
	protectPartial = [][]string{{"metadata", "labels"}, {"metadata", "annotations"}}
)

// owned builds an object ferry owns, labelled as such. extra labels come
// after ferry's; protect names the fields overlays may not change (see
// protectPaths).
func (s *side) owned(apiVersion, kind, name string, extra mapping, spec mapping, protect [][]string) *object {
	labels := mapping{
		{LabelManagedBy, managedByValue},
		{LabelMigration, s.m.Name},
		{LabelService, s.serviceLabel()},
	}
	labels = append(labels, extra...)
	body := mapping{
		{"apiVersion", apiVersion},
		{"kind", kind},
		{"metadata", mapping{
			{"labels", labels},
			{"name", name},
			{"namespace", s.svc.Namespace},
		}},
	}
	if spec != nil {
		body = append(body, field{"spec", spec})
	}
	return &object{
		apiVersion: apiVersion, kind: kind, namespace: s.svc.Namespace, name: name,
		body: body, protect: protect,
	}
}

// partialService builds the service's existing Service as a partial
// object: only the labels and annotations ferry sets on it.
func (s *side) partialService(labels, annotations mapping) *object {
	ann := append(mapping{{AnnotationPartial, "true"}}, annotations...)
	meta := mapping{{"annotations", ann}}
	if len(labels) > 0 {
		meta = append(meta, field{"labels", labels})
	}
	meta = append(meta, field{"name", s.svc.Name}, field{"namespace", s.svc.Namespace})
	return &object{
		apiVersion: "v1", kind: "Service", namespace: s.svc.Namespace, name: s.svc.Name,
		partial: true, protect: protectPartial,
		body: mapping{
			{"apiVersion", "v1"},
			{"kind", "Service"},
			{"metadata", meta},
		},
	}
}

// localService builds a Service that selects the service's pods in this
// cluster directly: a name that always means this cluster's endpoints and
// never a split. portName is "http" or "grpc" (Istio reads the protocol
// from it); protect covers extra's labels and the spec.
func (s *side) localService(name, portName string, extra mapping, protect [][]string) (*object, error) {
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	target, err := s.targetPort()
	if err != nil {
		return nil, err
	}
	spec := mapping{
		{"ports", seq{mapping{
			{"name", portName},
			{"port", port},
			{"protocol", "TCP"},
			{"targetPort", target},
		}}},
		{"selector", s.podSelector()},
	}
	return s.owned("v1", "Service", name, extra, spec, protect), nil
}

// backend is one backend of a split.
type backend struct {
	group, kind string // empty for a core Service
	name        string
	port        int
	weight      int
}

func (b backend) ref(withWeight bool) mapping {
	var m mapping
	if b.group != "" || b.kind != "" {
		m = append(m, field{"group", b.group}, field{"kind", b.kind})
	}
	m = append(m, field{"name", b.name}, field{"port", b.port})
	if withWeight {
		m = append(m, field{"weight", b.weight})
	}
	return m
}

// checkWeights asserts the invariant every split holds.
func checkWeights(what string, bs ...backend) error {
	sum := 0
	for _, b := range bs {
		if b.weight < 0 || b.weight > 100 {
			return fmt.Errorf("%s: backend %s has weight %d", what, b.name, b.weight)
		}
		sum += b.weight
	}
	if sum != 100 {
		return fmt.Errorf("%s: weights sum to %d, not 100", what, sum)
	}
	return nil
}

// Route kinds.
const (
	httpRoute = "HTTPRoute"
	grpcRoute = "GRPCRoute"
)

const gatewayAPIVersion = "gateway.networking.k8s.io/v1"

// route builds a GAMMA route attached to the service's own Service (the
// apex) that splits between local and remote, with a catch-all rule: a
// route attached to a Service rejects requests no rule matches. For a
// mirror step, the RequestMirror filter copies the step's share of
// requests to the to side.
func (s *side) route(kind string, local, remote backend) (*object, error) {
	if err := checkWeights(kind+" "+s.svc.Name, local, remote); err != nil {
		return nil, err
	}
	rule := mapping{}
	rule = append(rule, field{"backendRefs", seq{local.ref(true), remote.ref(true)}})
	if s.step.Mirror > 0 {
		to := remote
		if s.mirrorsLocal() {
			to = local
		}
		rule = append(rule, field{"filters", seq{mapping{
			{"requestMirror", mapping{
				{"backendRef", to.ref(false)},
				{"percent", s.step.Mirror},
			}},
			{"type", "RequestMirror"},
		}}})
	}
	if kind == httpRoute {
		rule = append(rule, field{"matches", seq{mapping{
			{"path", mapping{{"type", "PathPrefix"}, {"value", "/"}}},
		}}})
	}
	spec := mapping{
		{"parentRefs", seq{mapping{
			{"group", ""},
			{"kind", "Service"},
			{"name", s.svc.Name},
		}}},
		{"rules", seq{rule}},
	}
	return s.owned(gatewayAPIVersion, kind, s.svc.Name, nil, spec, protectRoute), nil
}

// name joins a service name and a suffix, e.g. "<svc>-<cluster>".
func name(parts ...string) string {
	n := parts[0]
	for _, p := range parts[1:] {
		n += "-" + p
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }
