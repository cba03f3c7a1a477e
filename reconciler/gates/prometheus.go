package gates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/template"

	"github.com/ferry-dev/ferry/plans"
)

// QueryData is what a prometheus gate's query template sees.
type QueryData struct {
	Migration string
	Wave      string
	// Service is "namespace/name"; Namespace and Name its parts.
	Service   string
	Namespace string
	Name      string
	// Cluster is the cluster whose Prometheus is asked.
	Cluster string
}

// Query renders a prometheus gate's query for service s of migration m on
// cluster. Unknown fields are errors, so that a typo in a plan does not
// silently query for an empty label.
func Query(text string, m *plans.Migration, wave string, s *plans.Service, cluster string) (string, error) {
	tmpl, err := template.New("query").Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	data := QueryData{Migration: m.Name, Wave: wave, Service: s.Ref(), Namespace: s.Namespace, Name: s.Name, Cluster: cluster}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// errNoData is a query that returned no sample.
var errNoData = errors.New("no data")

// prometheus evaluates a prometheus gate: the query on the gate's cluster
// (the migration's `to` by default) against the threshold, or against
// Baseline times the same query on the migration's `from` cluster.
func (e *Evaluator) prometheus(ctx context.Context, g plans.Gate, t Target) plans.GateResult {
	pg := g.Prometheus
	if pg == nil || t.Migration == nil || t.Service == nil {
		return inconclusive(g.Name + ": gate has no query")
	}
	if negate(pg.Op) == "" {
		return inconclusive(fmt.Sprintf("%s: unknown comparison %q", g.Name, pg.Op))
	}
	cluster := pg.Cluster
	if cluster == "" {
		cluster = t.Migration.To
	}
	value, err := e.queryOn(ctx, g, t, cluster)
	if err != nil {
		return inconclusive(fmt.Sprintf("%s: %v", g.Name, err))
	}
	limit, against := pg.Threshold, strconv.FormatFloat(pg.Threshold, 'g', 6, 64)
	if pg.Baseline != 0 {
		base, err := e.queryOn(ctx, g, t, t.Migration.From)
		if err != nil {
			return inconclusive(fmt.Sprintf("%s: baseline: %v", g.Name, err))
		}
		limit = pg.Baseline * base
		against = fmt.Sprintf("%s (%s × %s on %s)", num(limit), num(pg.Baseline), num(base), t.Migration.From)
	}
	r := plans.GateResult{Verdict: plans.Pass, Value: value}
	op := pg.Op
	if !compare(value, pg.Op, limit) {
		r.Verdict, op = plans.Fail, negate(pg.Op)
	}
	r.Reason = fmt.Sprintf("%s %s %s %s", g.Name, num(value), op, against)
	return r
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func compare(v float64, op string, limit float64) bool {
	switch op {
	case "<":
		return v < limit
	case "<=":
		return v <= limit
	case ">":
		return v > limit
	case ">=":
		return v >= limit
	}
	return false
}

// negate returns the relation that holds when op does not.
func negate(op string) string {
	return map[string]string{"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[op]
}

func (e *Evaluator) queryOn(ctx context.Context, g plans.Gate, t Target, cluster string) (float64, error) {
	c := e.Clusters[cluster]
	if c == nil || c.Prometheus == "" {
		return 0, fmt.Errorf("cluster %s has no Prometheus", cluster)
	}
	q, err := Query(g.Prometheus.Query, t.Migration, t.Wave, t.Service, cluster)
	if err != nil {
		return 0, fmt.Errorf("query template: %w", err)
	}
	limit := timeout(g.Prometheus.Timeout)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	v, err := QueryValue(ctx, e.client(), c.Prometheus, q)
	if errors.Is(err, errNoData) {
		return 0, fmt.Errorf("no data on %s", cluster)
	}
	if err != nil {
		return 0, fmt.Errorf("query on %s: %s", cluster, describe(err, limit))
	}
	return v, nil
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// QueryValue runs an instant query against the Prometheus at base (its
// HTTP API, /api/v1/query) and returns its single value. A query that
// returns no sample, several series, NaN or infinity, or anything but a
// vector or scalar, is an error: a gate cannot compare it.
func QueryValue(ctx context.Context, client *http.Client, base, query string) (float64, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/api/v1/query")
	if err != nil {
		return 0, errors.New("prometheus URL does not parse")
	}
	form := url.Values{"query": {query}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("%s: not a Prometheus API response", resp.Status)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	var d queryData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return 0, fmt.Errorf("decode result: %w", err)
	}
	var raw any
	switch d.ResultType {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return 0, fmt.Errorf("decode scalar: %w", err)
		}
		raw = v[1]
	case "vector":
		var vs []sample
		if err := json.Unmarshal(d.Result, &vs); err != nil {
			return 0, fmt.Errorf("decode vector: %w", err)
		}
		switch len(vs) {
		case 0:
			return 0, errNoData
		case 1:
			raw = vs[0].Value[1]
		default:
			return 0, fmt.Errorf("%d series, want one (aggregate the query)", len(vs))
		}
	default:
		return 0, fmt.Errorf("result is a %s, want a vector or a scalar", d.ResultType)
	}
	s, ok := raw.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", raw)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %q: %w", s, err)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value is %s", s)
	}
	return v, nil
}
