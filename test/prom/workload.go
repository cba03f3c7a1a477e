package prom

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// RequestsMetric is the counter a Workload exposes, with a code label of
// "200" for successes and "500" for errors.
const RequestsMetric = "ferry_test_requests_total"

// Workload is an in-test HTTP server exposing metrics in Prometheus's text
// format at /metrics: a request counter whose successes and errors the
// test adds, and any gauges it sets.
type Workload struct {
	srv *httptest.Server

	mu      sync.Mutex
	success float64
	errors  float64
	gauges  map[string]float64
	scrapes int
}

// NewWorkload starts a workload on loopback and closes it at cleanup.
func NewWorkload(t testing.TB) *Workload {
	t.Helper()
	w := &Workload{gauges: map[string]float64{}}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

// Addr is the workload's host:port, for a Scrape.
func (w *Workload) Addr() string { return strings.TrimPrefix(w.srv.URL, "http://") }

// Add adds successful and failed requests to the counter.
func (w *Workload) Add(success, errors int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.success += float64(success)
	w.errors += float64(errors)
}

// Set sets the counter's successes and errors; lowering them is a counter
// reset, as when a real service restarts.
func (w *Workload) Set(success, errors int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.success, w.errors = float64(success), float64(errors)
}

// SetGauge sets a gauge, named with its labels if any
// (`queue_depth{queue="a"}`); math.NaN() is exposed as NaN.
func (w *Workload) SetGauge(series string, v float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gauges[series] = v
}

// Scrapes returns how many times the workload was scraped.
func (w *Workload) Scrapes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scrapes
}

func (w *Workload) serve(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(rw, r)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scrapes++
	rw.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(rw, "# TYPE %s counter\n", RequestsMetric)
	fmt.Fprintf(rw, "%s{code=\"200\"} %s\n", RequestsMetric, format(w.success))
	fmt.Fprintf(rw, "%s{code=\"500\"} %s\n", RequestsMetric, format(w.errors))
	names := make([]string, 0, len(w.gauges))
	for n := range w.gauges {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(rw, "%s %s\n", n, format(w.gauges[n]))
	}
}

func format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
