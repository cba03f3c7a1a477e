package gates_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/gates"
)

// TestPrometheusAnswers checks how answers Prometheus gives (and some it
// should not) are read, against a stand-in API; TestPrometheusReal checks
// the gate against a real Prometheus.
func TestPrometheusAnswers(t *testing.T) {
	var (
		mu     sync.Mutex // the handler outlives a timed-out request
		answer string
		status = http.StatusOK
		query  string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		query = r.FormValue("query")
		status, answer := status, answer
		mu.Unlock()
		w.WriteHeader(status)
		if status == http.StatusGatewayTimeout {
			time.Sleep(300 * time.Millisecond)
		}
		fmt.Fprint(w, answer)
	}))
	defer srv.Close()
	vector := func(vals ...string) string {
		s := `{"status":"success","data":{"resultType":"vector","result":[`
		for i, v := range vals {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(`{"metric":{"i":"%d"},"value":[1700000000.1,"%s"]}`, i, v)
		}
		return s + "]}}"
	}
	m := migration()
	e := &gates.Evaluator{Clusters: map[string]*plans.Cluster{"eks": {Name: "eks", Prometheus: srv.URL + "/"}}}
	g := plans.Gate{Name: "success-rate", Kind: plans.GatePrometheus, Prometheus: &plans.PrometheusGate{
		Query: `sum(rate(requests_total{namespace="{{.Namespace}}",service="{{.Name}}",cluster="{{.Cluster}}",code!~"5.."}[5m]))`,
		Op:    ">=", Threshold: 0.995, Timeout: 100 * time.Millisecond,
	}}
	tests := []struct {
		name   string
		status int
		answer string
		want   verdict
	}{
		{"above the threshold", 200, vector("0.998"), verdict{plans.Pass, "success-rate 0.998 >= 0.995"}},
		{"at the threshold", 200, vector("0.995"), verdict{plans.Pass, "success-rate 0.995 >= 0.995"}},
		{"below the threshold", 200, vector("0.981"), verdict{plans.Fail, "success-rate 0.981 < 0.995"}},
		{"a scalar", 200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.999"]}}`, verdict{plans.Pass, "success-rate 0.999 >= 0.995"}},
		{"no series", 200, vector(), verdict{plans.Inconclusive, "success-rate: no data on eks"}},
		{"several series", 200, vector("1", "0.5"), verdict{plans.Inconclusive, "success-rate: query on eks: 2 series, want one (aggregate the query)"}},
		{"NaN", 200, vector("NaN"), verdict{plans.Inconclusive, "success-rate: query on eks: value is NaN"}},
		{"+Inf", 200, vector("+Inf"), verdict{plans.Inconclusive, "success-rate: query on eks: value is +Inf"}},
		{"a range vector", 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, verdict{plans.Inconclusive, "success-rate: query on eks: result is a matrix, want a vector or a scalar"}},
		{"a bad query", 400, `{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`, verdict{plans.Inconclusive, "success-rate: query on eks: bad_data: parse error at char 5"}},
		{"a proxy's error page", 502, `<html>bad gateway</html>`, verdict{plans.Inconclusive, "success-rate: query on eks: 502 Bad Gateway: not a Prometheus API response"}},
		{"too slow", http.StatusGatewayTimeout, vector("1"), verdict{plans.Inconclusive, "success-rate: query on eks: no answer within 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			status, answer = tt.status, tt.answer
			mu.Unlock()
			r := e.Evaluate(t.Context(), g, target(m))
			if diff := cmp.Diff(tt.want, verdictOf(r)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if want := `sum(rate(requests_total{namespace="shop",service="db",cluster="eks",code!~"5.."}[5m]))`; query != want {
		t.Errorf("query sent:\n%s\nwant:\n%s", query, want)
	}
}

func TestPrometheusMisconfigured(t *testing.T) {
	m := migration()
	tests := []struct {
		name     string
		clusters map[string]*plans.Cluster
		pg       plans.PrometheusGate
		want     string
	}{
		{"no Prometheus for the cluster", nil, plans.PrometheusGate{Query: "up", Op: ">", Threshold: 0},
			"success-rate: cluster eks has no Prometheus"},
		{"a template error", map[string]*plans.Cluster{"eks": {Prometheus: "http://127.0.0.1:1"}},
			plans.PrometheusGate{Query: "{{.Nope}}", Op: ">"},
			`success-rate: query template: template: query:1:2: executing "query" at <.Nope>: can't evaluate field Nope in type gates.QueryData`},
		{"an unknown comparison", map[string]*plans.Cluster{"eks": {Prometheus: "http://127.0.0.1:1"}},
			plans.PrometheusGate{Query: "up", Op: "=="},
			`success-rate: unknown comparison "=="`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &gates.Evaluator{Clusters: tt.clusters}
			pg := tt.pg
			r := e.Evaluate(t.Context(), plans.Gate{Name: "success-rate", Kind: plans.GatePrometheus, Prometheus: &pg}, target(m))
			if r.Verdict != plans.Inconclusive || tt.want != "" && r.Reason != tt.want {
				t.Errorf("got %s %q, want inconclusive %q", r.Verdict, r.Reason, tt.want)
			}
		})
	}
}
