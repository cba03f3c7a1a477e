// Package metrics holds ferry's Prometheus metrics: what the daemon did,
// per reconcile, service, gate, applied object and plan commit. It only
// records; serving them is the caller's (Handler).
//
// Every method is safe on a nil *Metrics, so code paths without metrics
// (tests, one-shot commands) need no checks.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-dev/ferry/plans"
)

// Metrics is the set of ferry's collectors on one registry.
type Metrics struct {
	reg *prometheus.Registry

	reconcile   *prometheus.HistogramVec
	revision    *prometheus.GaugeVec
	planValid   prometheus.Gauge
	refused     prometheus.Counter
	weight      *prometheus.GaugeVec
	step        *prometheus.GaugeVec
	gateResults *prometheus.CounterVec
	gateSeconds *prometheus.HistogramVec
	applied     *prometheus.CounterVec
	sourceErrs  prometheus.Counter
	leader      prometheus.Gauge
}

// New returns metrics registered on a new registry, with the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_reconcile_duration_seconds",
			Help:    "Time of one reconcile (poll, decide, render, apply, persist), by result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_plan_revision_info",
			Help: "The plan commit in force (value 1, the revision as a label).",
		}, []string{"revision"}),
		planValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_plan_valid",
			Help: "1 when the newest plan commit is in force, 0 when it was refused and an older one stays in force.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_plan_refused_total",
			Help: "Plan commits refused because they failed to load, validate or render.",
		}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_service_weight_percent",
			Help: "Percent of a service's traffic on the migration's `to` side.",
		}, []string{"migration", "service"}),
		step: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_service_step",
			Help: "Index of a service's current step in its migration's steps.",
		}, []string{"migration", "service"}),
		gateResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_gate_results_total",
			Help: "Gate evaluations by migration, gate and verdict (pass, fail, inconclusive).",
		}, []string{"migration", "gate", "verdict"}),
		gateSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_gate_duration_seconds",
			Help:    "Time of one gate evaluation (Prometheus query, webhook call), by kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_apply_objects_total",
			Help: "Objects handled by the applier, by cluster and action (created, configured, unchanged, pruned, conflict, ...).",
		}, []string{"cluster", "action"}),
		sourceErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_source_errors_total",
			Help: "Failed polls or fetches of the plan repository.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_leader",
			Help: "1 while this replica holds the leader lease (or runs without leader election).",
		}),
	}
	m.reg.MustRegister(m.reconcile, m.revision, m.planValid, m.refused, m.weight, m.step,
		m.gateResults, m.gateSeconds, m.applied, m.sourceErrs, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Reconciled records one reconcile.
func (m *Metrics) Reconciled(d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconcile.WithLabelValues(result).Observe(d.Seconds())
}

// PlansInForce records the commit now in force.
func (m *Metrics) PlansInForce(revision string) {
	if m == nil {
		return
	}
	m.revision.Reset()
	m.revision.WithLabelValues(revision).Set(1)
	m.planValid.Set(1)
}

// PlansRefused records a refused commit; the one in force stays.
func (m *Metrics) PlansRefused() {
	if m == nil {
		return
	}
	m.refused.Inc()
	m.planValid.Set(0)
}

// PlansStale records that the newest commit was refused by the source
// itself (history rewritten, a bad signature): older plans stay in force.
func (m *Metrics) PlansStale() {
	if m == nil {
		return
	}
	m.planValid.Set(0)
}

// SourceError records a failed poll.
func (m *Metrics) SourceError() {
	if m == nil {
		return
	}
	m.sourceErrs.Inc()
}

// Gates counts the new gate results of a migration's decisions.
func (m *Metrics) Gates(mig *plans.Migration, plan plans.Plan) {
	if m == nil {
		return
	}
	for _, d := range plan.Decisions {
		for _, r := range d.Round {
			m.gateResults.WithLabelValues(mig.Name, r.Gate, string(r.Verdict)).Inc()
		}
	}
}

// Progress records the step and weight of a migration's services.
func (m *Metrics) Progress(mig *plans.Migration, plan plans.Plan) {
	if m == nil {
		return
	}
	for _, d := range plan.Decisions {
		w := d.Progress.Weight
		step := d.Progress.Step
		if step >= 0 && step < len(mig.Steps) {
			w = mig.Steps[step].Weight
		}
		m.weight.WithLabelValues(mig.Name, d.Service).Set(float64(w))
		m.step.WithLabelValues(mig.Name, d.Service).Set(float64(step))
	}
}

// Forget drops the series of a service that left the plans.
func (m *Metrics) Forget(migration, service string) {
	if m == nil {
		return
	}
	m.weight.DeleteLabelValues(migration, service)
	m.step.DeleteLabelValues(migration, service)
}

// GateEvaluated records the time of one gate evaluation.
func (m *Metrics) GateEvaluated(kind plans.GateKind, d time.Duration) {
	if m == nil {
		return
	}
	m.gateSeconds.WithLabelValues(string(kind)).Observe(d.Seconds())
}

// Applied records n objects of cluster handled with action.
func (m *Metrics) Applied(cluster, action string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.applied.WithLabelValues(cluster, action).Add(float64(n))
}

// Leader records whether this replica leads.
func (m *Metrics) Leader(leading bool) {
	if m == nil {
		return
	}
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}
