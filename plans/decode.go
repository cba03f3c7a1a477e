package plans

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"cuelang.org/go/cue"
)

// The raw shapes of the validated CUE value; the schema has filled in every
// default, so decoding needs none of its own.
type rawRepo struct {
	Clusters   map[string]rawCluster   `json:"clusters"`
	Migrations map[string]rawMigration `json:"migrations"`
}

type rawCluster struct {
	Context    string `json:"context"`
	Prometheus string `json:"prometheus"`
}

type rawMigration struct {
	From        string                 `json:"from"`
	To          string                 `json:"to"`
	Provider    string                 `json:"provider"`
	Linkerd     *LinkerdOptions        `json:"linkerd"`
	Istio       *IstioOptions          `json:"istio"`
	GatewayAPI  *GatewayAPIOptions     `json:"gatewayAPI"`
	KubeSlice   *KubeSliceOptions      `json:"kubeslice"`
	ExternalDNS *ExternalDNSOptions    `json:"externalDNS"`
	Steps       []any                  `json:"steps"`
	Services    map[string]rawSettings `json:"services"`
	Waves       []rawWave              `json:"waves"`
	Window      struct {
		Schedule []string  `json:"schedule"`
		Timezone string    `json:"timezone"`
		Deny     []rawDeny `json:"deny"`
	} `json:"window"`
	Soak             string        `json:"soak"`
	Gates            []rawGate     `json:"gates"`
	OnFailure        string        `json:"onFailure"`
	FailureThreshold int           `json:"failureThreshold"`
	AnalysisInterval string        `json:"analysisInterval"`
	MaxConcurrent    int           `json:"maxConcurrent"`
	Paused           bool          `json:"paused"`
	Rollback         bool          `json:"rollback"`
	PruneEmpty       bool          `json:"pruneEmpty"`
	Approvals        []rawApproval `json:"approvals"`
}

type rawSettings struct {
	Port        int               `json:"port"`
	TargetPort  int               `json:"targetPort"`
	DependsOn   []string          `json:"dependsOn"`
	Rollback    bool              `json:"rollback"`
	Hostname    string            `json:"hostname"`
	Aliases     []string          `json:"aliases"`
	PodSelector map[string]string `json:"podSelector"`
}

type rawWave struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	Selector *struct {
		Namespace   string            `json:"namespace"`
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	MaxConcurrent int       `json:"maxConcurrent"`
	Gates         []rawGate `json:"gates"`
	Paused        bool      `json:"paused"`
	Rollback      bool      `json:"rollback"`
	IstioMode     string    `json:"istioMode"`
}

type rawDeny struct {
	Reason   string `json:"reason"`
	Cron     string `json:"cron"`
	Duration string `json:"duration"`
	From     string `json:"from"`
	To       string `json:"to"`
}

type rawGate struct {
	Name       string `json:"name"`
	Steps      []int  `json:"steps"`
	Soak       string `json:"soak"`
	Prometheus *struct {
		Query     string   `json:"query"`
		Cluster   string   `json:"cluster"`
		Op        string   `json:"op"`
		Threshold *float64 `json:"threshold"`
		Baseline  float64  `json:"baseline"`
		Timeout   string   `json:"timeout"`
	} `json:"prometheus"`
	Webhook *struct {
		URL     string `json:"url"`
		Timeout string `json:"timeout"`
	} `json:"webhook"`
	Approval *struct{} `json:"approval"`
}

type rawApproval struct {
	Wave    string `json:"wave"`
	Service string `json:"service"`
	Step    int    `json:"step"`
	By      string `json:"by"`
}

// decoder turns the raw value into the typed model, recording problems that
// only Go can see (durations, time zones, gate shapes) with positions
// looked up in the CUE value.
type decoder struct {
	v    cue.Value // the user's data, for positions
	errs Errors
}

func (d *decoder) errorf(path []string, format string, args ...any) {
	e := &ValidationError{Path: formatPath(path), Msg: fmt.Sprintf(format, args...)}
	if p := nearestPos(d.v, path); p.IsValid() {
		e.File, e.Line, e.Column = p.Filename(), p.Line(), p.Column()
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) duration(path []string, s string) time.Duration {
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(path, "%q is not a duration; expected e.g. \"90s\", \"10m\" or \"1h30m\"", s)
	}
	return dur
}

// decode builds the typed model from the validated value. When tolerant,
// the value has errors already reported; the fields without errors are
// decoded anyway so that the semantic checks can report their problems in
// the same run.
func decode(full, data cue.Value, tolerant bool) (*Repository, Errors) {
	var raw rawRepo
	repo := &Repository{Clusters: map[string]*Cluster{}}
	if tolerant {
		x, ok := salvage(full)
		if !ok {
			return repo, nil
		}
		b, err := json.Marshal(x)
		if err == nil {
			err = json.Unmarshal(b, &raw)
		}
		if err != nil {
			return repo, nil
		}
	} else if err := full.Decode(&raw); err != nil {
		return repo, Errors{{Msg: fmt.Sprintf("decode validated plans: %v", err)}}
	}
	d := &decoder{v: data}
	for name, c := range raw.Clusters {
		repo.Clusters[name] = &Cluster{Name: name, Context: c.Context, Prometheus: c.Prometheus}
	}
	names := make([]string, 0, len(raw.Migrations))
	for name := range raw.Migrations {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		repo.Migrations = append(repo.Migrations, d.migration(name, raw.Migrations[name]))
	}
	return repo, d.errs
}

func toInt(x any) (int, bool) {
	switch x := x.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case json.Number:
		n, err := x.Int64()
		return int(n), err == nil
	}
	return 0, false
}

// salvage returns the parts of v that are free of errors, as plain Go
// values. A list with a bad element is dropped whole, so indices stay true.
func salvage(v cue.Value) (any, bool) {
	switch v.IncompleteKind() {
	case cue.StructKind:
		it, err := v.Fields()
		if err != nil {
			return nil, false
		}
		m := map[string]any{}
		for it.Next() {
			if x, ok := salvage(it.Value()); ok {
				m[it.Selector().Unquoted()] = x
			}
		}
		return m, true
	case cue.ListKind:
		it, err := v.List()
		if err != nil {
			return nil, false
		}
		l := []any{}
		for it.Next() {
			x, ok := salvage(it.Value())
			if !ok {
				return nil, false
			}
			l = append(l, x)
		}
		return l, true
	default:
		var x any
		if err := v.Decode(&x); err != nil {
			return nil, false
		}
		return x, true
	}
}

func (d *decoder) migration(name string, r rawMigration) *Migration {
	base := []string{"migrations", name}
	at := func(s ...string) []string { return append(append([]string(nil), base...), s...) }
	m := &Migration{
		Name:             name,
		From:             r.From,
		To:               r.To,
		Provider:         Provider(r.Provider),
		OnFailure:        FailurePolicy(r.OnFailure),
		FailureThreshold: r.FailureThreshold,
		MaxConcurrent:    r.MaxConcurrent,
		Paused:           r.Paused,
		Rollback:         r.Rollback,
		PruneEmpty:       r.PruneEmpty,
	}
	// Provider options: the schema's defaults apply only when the block is
	// present, so fill in the same defaults for an absent block.
	m.Linkerd = LinkerdOptions{Split: "smi", Export: "exported"}
	if r.Linkerd != nil {
		m.Linkerd = *r.Linkerd
	}
	m.Istio = IstioOptions{Mode: "ambient"}
	if r.Istio != nil {
		m.Istio = *r.Istio
	}
	m.GatewayAPI = GatewayAPIOptions{Route: "http"}
	if r.GatewayAPI != nil {
		m.GatewayAPI = *r.GatewayAPI
	}
	if r.KubeSlice != nil {
		m.KubeSlice = *r.KubeSlice
	}
	if r.ExternalDNS != nil {
		m.ExternalDNS = *r.ExternalDNS
	}

	m.Soak = d.duration(at("soak"), r.Soak)
	m.AnalysisInterval = d.duration(at("analysisInterval"), r.AnalysisInterval)

	// Steps: an implicit 0 comes first so that index 0 always means "no
	// traffic yet"; a mirror step keeps the weight of the step before it.
	m.Steps = []Step{{Weight: 0}}
	for i, s := range r.Steps {
		if mp, ok := s.(map[string]any); ok {
			mir, _ := toInt(mp["mirror"])
			m.Steps = append(m.Steps, Step{Weight: m.Steps[len(m.Steps)-1].Weight, Mirror: mir})
			continue
		}
		w, ok := toInt(s)
		switch {
		case !ok:
			d.errorf(at("steps", fmt.Sprint(i)), "unexpected step %v", s)
		case i == 0 && w == 0:
		default:
			m.Steps = append(m.Steps, Step{Weight: w})
		}
	}

	loc, err := time.LoadLocation(r.Window.Timezone)
	if err != nil {
		d.errorf(at("window", "timezone"), "unknown time zone %q; expected an IANA name such as \"Europe/Berlin\" or \"UTC\"", r.Window.Timezone)
		loc = time.UTC
	}
	m.Window = Window{Schedules: r.Window.Schedule, Timezone: r.Window.Timezone, Location: loc}
	for i, dr := range r.Window.Deny {
		p := at("window", "deny", fmt.Sprint(i))
		dn := Deny{Reason: dr.Reason, Cron: dr.Cron}
		switch {
		case dr.Cron != "" && (dr.From != "" || dr.To != ""):
			d.errorf(p, "a deny window is either cron + duration or from + to, not both")
		case dr.Cron != "":
			if dr.Duration == "" {
				d.errorf(p, "deny window with cron %q has no duration; expected e.g. duration: \"2h\"", dr.Cron)
			} else {
				dn.Duration = d.duration(append(p, "duration"), dr.Duration)
			}
		case dr.From != "" || dr.To != "":
			dn.From = d.date(append(p, "from"), dr.From, loc)
			dn.To = d.date(append(p, "to"), dr.To, loc)
			if !dn.From.IsZero() && !dn.To.IsZero() && !dn.To.After(dn.From) {
				d.errorf(append(p, "to"), "%s is not after from %s", dr.To, dr.From)
			}
		default:
			d.errorf(p, "a deny window needs cron + duration or from + to")
		}
		m.Window.Deny = append(m.Window.Deny, dn)
	}

	m.Gates = d.gates(at("gates"), r.Gates)

	for wi, rw := range r.Waves {
		w := &Wave{
			Name:          rw.Name,
			MaxConcurrent: rw.MaxConcurrent,
			Paused:        rw.Paused,
			Rollback:      rw.Rollback,
			IstioMode:     rw.IstioMode,
			Gates:         d.gates(at("waves", fmt.Sprint(wi), "gates"), rw.Gates),
		}
		if w.MaxConcurrent == 0 {
			w.MaxConcurrent = m.MaxConcurrent
		}
		if rw.Selector != nil {
			w.Selector = &Selector{Namespace: rw.Selector.Namespace, MatchLabels: rw.Selector.MatchLabels}
		}
		for _, ref := range rw.Services {
			ns, n, _ := strings.Cut(ref, "/")
			st, ok := r.Services[ref]
			if !ok {
				st = rawSettings{Port: 80}
			}
			w.Services = append(w.Services, &Service{
				Namespace: ns, Name: n, Wave: w.Name,
				Port: st.Port, TargetPort: st.TargetPort, DependsOn: st.DependsOn, Rollback: st.Rollback,
				Hostname: st.Hostname, Aliases: st.Aliases, PodSelector: st.PodSelector,
			})
		}
		m.Waves = append(m.Waves, w)
	}
	for _, a := range r.Approvals {
		m.Approvals = append(m.Approvals, Approval(a))
	}
	return m
}

func (d *decoder) date(path []string, s string, loc *time.Location) time.Time {
	if s == "" {
		d.errorf(path, "missing; a date range needs both from and to")
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t
		}
	}
	d.errorf(path, "%q is not a date; expected RFC 3339 (\"2026-12-20T00:00:00Z\") or \"2026-12-20\"", s)
	return time.Time{}
}

func (d *decoder) gates(path []string, rs []rawGate) []Gate {
	var out []Gate
	for i, r := range rs {
		p := append(append([]string(nil), path...), fmt.Sprint(i))
		g := Gate{Name: r.Name, Steps: r.Steps}
		var kinds []string
		if r.Soak != "" {
			kinds = append(kinds, "soak")
			g.Kind = GateSoak
			g.Soak = d.duration(append(p, "soak"), r.Soak)
		}
		if r.Prometheus != nil {
			kinds = append(kinds, "prometheus")
			g.Kind = GatePrometheus
			pg := &PrometheusGate{
				Query: r.Prometheus.Query, Cluster: r.Prometheus.Cluster, Op: r.Prometheus.Op,
				Baseline: r.Prometheus.Baseline,
				Timeout:  d.duration(append(p, "prometheus", "timeout"), r.Prometheus.Timeout),
			}
			switch {
			case r.Prometheus.Threshold != nil && pg.Baseline != 0:
				d.errorf(append(p, "prometheus"), "threshold and baseline are both set; a gate compares with one of them")
			case r.Prometheus.Threshold != nil:
				pg.Threshold = *r.Prometheus.Threshold
			case pg.Baseline == 0:
				d.errorf(append(p, "prometheus"), "neither threshold nor baseline is set; expected threshold: <number> or baseline: <factor of the from cluster's value>")
			}
			g.Prometheus = pg
		}
		if r.Webhook != nil {
			kinds = append(kinds, "webhook")
			g.Kind = GateWebhook
			g.Webhook = &WebhookGate{URL: r.Webhook.URL, Timeout: d.duration(append(p, "webhook", "timeout"), r.Webhook.Timeout)}
		}
		if r.Approval != nil {
			kinds = append(kinds, "approval")
			g.Kind = GateApproval
		}
		switch len(kinds) {
		case 0:
			d.errorf(p, "gate %q has no check; expected exactly one of soak, prometheus, webhook, approval", r.Name)
		case 1:
		default:
			d.errorf(p, "gate %q has %d checks (%s); expected exactly one, so split it into %d gates", r.Name, len(kinds), strings.Join(kinds, ", "), len(kinds))
		}
		out = append(out, g)
	}
	return out
}
