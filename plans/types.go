package plans

import (
	"fmt"
	"time"
)

// Repository is a validated plan repository: the clusters it names and the
// migrations between them. It is immutable once loaded; callers share it.
type Repository struct {
	// Clusters by name.
	Clusters map[string]*Cluster
	// Migrations sorted by name.
	Migrations []*Migration
	// Overlays holds the user's Kustomize customizations per cluster: the
	// files under overlays/<cluster>/ of the plan repository, by path
	// relative to that directory. The renderer composes them on top of what
	// ferry generates.
	Overlays map[string]map[string][]byte
}

// Migration returns the migration with the given name, or nil.
func (r *Repository) Migration(name string) *Migration {
	for _, m := range r.Migrations {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// ClusterNames returns the names of all clusters, sorted.
func (r *Repository) ClusterNames() []string { return sortedKeys(r.Clusters) }

// Cluster is a named Kubernetes API endpoint, or only a name when the plan is
// used for rendering alone.
type Cluster struct {
	Name string
	// Context is the kubeconfig context; empty means render-only.
	Context string
	// Prometheus is the base URL of the cluster's Prometheus, if any.
	Prometheus string
}

// Provider says how exports and splits are expressed.
type Provider string

// The providers ferry renders for.
const (
	Linkerd     Provider = "linkerd"
	Istio       Provider = "istio"
	GatewayAPI  Provider = "gateway-api"
	KubeSlice   Provider = "kubeslice"
	MCS         Provider = "mcs"
	Cilium      Provider = "cilium"
	ExternalDNS Provider = "external-dns"
)

// Providers lists every provider, in the order the README's table uses.
var Providers = []Provider{Linkerd, Istio, GatewayAPI, KubeSlice, MCS, Cilium, ExternalDNS}

// CanMirror reports whether the provider can mirror a share of requests to
// the target without shifting them. Linkerd cannot; neither can the
// DNS- and annotation-based providers.
func (p Provider) CanMirror() bool { return p == Istio || p == GatewayAPI }

// CanWeight reports whether the provider can split traffic by weight at all.
// Cilium's global services balance across clusters without weights, so only
// 0 and 100 are expressible.
func (p Provider) CanWeight() bool { return p != Cilium }

// Migration moves a set of services from one cluster to another.
type Migration struct {
	Name     string
	From, To string
	Provider Provider

	Linkerd     LinkerdOptions
	Istio       IstioOptions
	GatewayAPI  GatewayAPIOptions
	KubeSlice   KubeSliceOptions
	ExternalDNS ExternalDNSOptions

	// Steps are the positions a service moves through. Steps[0] is always
	// weight 0 (added by the loader when the plan does not start at 0) and
	// the last step has weight 100.
	Steps []Step
	Waves []*Wave

	Window Window
	// Soak is the minimum time a service stays at a step before it may be
	// promoted.
	Soak time.Duration
	// Gates apply to every service of the migration.
	Gates            []Gate
	OnFailure        FailurePolicy
	FailureThreshold int
	// AnalysisInterval is how often gates run while a service progresses.
	AnalysisInterval time.Duration
	// MaxConcurrent bounds how many services of one wave move at once,
	// unless the wave says otherwise.
	MaxConcurrent int

	Paused   bool
	Rollback bool
	// PruneEmpty allows the applier to prune everything when the migration
	// renders nothing; otherwise an empty render never prunes.
	PruneEmpty bool
	Approvals  []Approval
}

// Services returns every service of the migration in wave order.
func (m *Migration) Services() []*Service {
	var out []*Service
	for _, w := range m.Waves {
		out = append(out, w.Services...)
	}
	return out
}

// Service returns the service with the given "namespace/name", or nil.
func (m *Migration) Service(ref string) *Service {
	for _, w := range m.Waves {
		for _, s := range w.Services {
			if s.Ref() == ref {
				return s
			}
		}
	}
	return nil
}

// Wave returns the wave with the given name, or nil.
func (m *Migration) Wave(name string) *Wave {
	for _, w := range m.Waves {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// StepIndexForWeight maps a weight to the highest step whose weight is not
// above it; used when steps are edited mid-flight.
func (m *Migration) StepIndexForWeight(weight int) int {
	idx := 0
	for i, s := range m.Steps {
		if s.Weight <= weight && s.Mirror == 0 {
			idx = i
		}
	}
	return idx
}

// Step is one position of a service: the percent of traffic on the `to`
// side, and for a mirror step the percent of requests copied to it.
type Step struct {
	Weight int
	// Mirror is the percent of requests mirrored to the `to` side; zero for
	// an ordinary step.
	Mirror int
}

// String renders the step the way plans write it.
func (s Step) String() string {
	if s.Mirror > 0 {
		return fmt.Sprintf("mirror %d%% (weight %d)", s.Mirror, s.Weight)
	}
	return fmt.Sprintf("%d", s.Weight)
}

// LinkerdOptions selects how Linkerd exports and splits are written.
type LinkerdOptions struct {
	// Split is "smi" (TrafficSplit) or "httproute" (Gateway API).
	Split string
	// Export is "exported" (mirror.linkerd.io/exported: "true") or
	// "remote-discovery" for flat networks.
	Export string
}

// IstioOptions selects the Istio API.
type IstioOptions struct {
	// Mode is "ambient" (Gateway API HTTPRoute) or "sidecar"
	// (VirtualService + DestinationRule). A wave may override it.
	Mode string
}

// GatewayAPIOptions selects the route kind for the generic GAMMA provider.
type GatewayAPIOptions struct {
	// Route is "http" or "grpc".
	Route string
}

// KubeSliceOptions names the slice services are exported on.
type KubeSliceOptions struct {
	Slice string
}

// ExternalDNSOptions configures weighted DNS records.
type ExternalDNSOptions struct {
	// Domain is appended to "<name>.<namespace>." when a service names no
	// hostname of its own.
	Domain string
}

// Wave is an ordered group of services; wave n+1 starts only when wave n
// has completed.
type Wave struct {
	Name     string
	Services []*Service
	// Selector, when set, adds the Services of the from cluster matching it;
	// it is resolved against a live cluster and ignored in render-only use.
	Selector *Selector
	// MaxConcurrent bounds how many services of the wave move at once.
	MaxConcurrent int
	// Gates apply to the services of this wave in addition to the
	// migration's.
	Gates    []Gate
	Paused   bool
	Rollback bool
	// IstioMode overrides the migration's Istio mode for this wave; a wave
	// moved to "ambient" has its legacy VirtualService removed.
	IstioMode string
}

// Selector selects Services by label.
type Selector struct {
	Namespace   string
	MatchLabels map[string]string
}

// Service is one service to move, named namespace/name.
type Service struct {
	Namespace string
	Name      string
	// Port is the Service port that routes send to.
	Port int
	// TargetPort is the port the service's pods listen on; zero means Port.
	// The local-only Services and exports the renderer creates (which
	// select the pods themselves rather than the Service) target it.
	TargetPort int
	// DependsOn lists services ("namespace/name") of the same migration that
	// must complete before this one starts.
	DependsOn []string
	Rollback  bool
	// Hostname is the DNS name for external-dns; Aliases the extra names
	// KubeSlice exports it under.
	Hostname string
	Aliases  []string
	// PodSelector selects the service's pods (KubeSlice exports pods).
	PodSelector map[string]string
	// Wave is the name of the wave the service belongs to.
	Wave string
}

// Ref returns "namespace/name".
func (s *Service) Ref() string { return s.Namespace + "/" + s.Name }

// ServiceID names one service of one migration.
type ServiceID struct {
	Migration string
	Service   string // namespace/name
}

// String returns "migration/namespace/name".
func (id ServiceID) String() string { return id.Migration + "/" + id.Service }

// FailurePolicy is what happens when gates fail failureThreshold times.
type FailurePolicy string

// Failure policies.
const (
	FailRollback FailurePolicy = "rollback"
	FailHold     FailurePolicy = "hold"
)

// Window says when promotions may happen.
type Window struct {
	// Schedules are cron expressions (robfig/cron standard syntax).
	Schedules []string
	// Timezone is an IANA name; Location is it loaded.
	Timezone string
	Location *time.Location
	Deny     []Deny
}

// Deny is a freeze: either a cron expression with a duration, or a fixed
// date range.
type Deny struct {
	Reason   string
	Cron     string
	Duration time.Duration
	From, To time.Time
}

// GateKind says which check a gate is.
type GateKind string

// Gate kinds.
const (
	GateSoak       GateKind = "soak"
	GatePrometheus GateKind = "prometheus"
	GateWebhook    GateKind = "webhook"
	GateApproval   GateKind = "approval"
)

// Gate is a check that must pass before a promotion.
type Gate struct {
	Name string
	Kind GateKind
	// Steps limits the gate to promotions *to* these weights; empty means
	// every promotion.
	Steps []int

	Soak       time.Duration
	Prometheus *PrometheusGate
	Webhook    *WebhookGate
}

// AppliesTo reports whether the gate guards a promotion to weight w.
func (g Gate) AppliesTo(w int) bool {
	if len(g.Steps) == 0 {
		return true
	}
	for _, s := range g.Steps {
		if s == w {
			return true
		}
	}
	return false
}

// PrometheusGate compares the result of a PromQL query with a threshold, or
// with the same query evaluated on the migration's from cluster.
type PrometheusGate struct {
	// Query is a text/template over .Migration, .Service, .Namespace,
	// .Cluster.
	Query string
	// Cluster is the cluster whose Prometheus is asked; the migration's
	// `to` cluster by default.
	Cluster string
	// Op is one of <, <=, >, >=.
	Op string
	// Threshold is compared with the value when Baseline is zero.
	Threshold float64
	// Baseline, when non-zero, compares the value with Baseline times the
	// query's value on the from cluster.
	Baseline float64
	Timeout  time.Duration
}

// WebhookGate posts the promotion context to a URL; 2xx passes.
type WebhookGate struct {
	URL     string
	Timeout time.Duration
}

// Approval is a person's approval recorded in Git.
type Approval struct {
	// Wave and Service scope the approval; an empty Service approves the
	// whole wave.
	Wave    string
	Service string
	// Step, when non-zero, approves only the promotion to that weight.
	Step int
	By   string
}

// Approves reports whether the approval covers promoting svc (in wave) to
// weight w.
func (a Approval) Approves(wave, svc string, w int) bool {
	if a.Wave != "" && a.Wave != wave {
		return false
	}
	if a.Service != "" && a.Service != svc {
		return false
	}
	return a.Step == 0 || a.Step == w
}
