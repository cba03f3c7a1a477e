package prom_test

import (
	"math"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/test/prom"
)

func TestPrometheusScrapesWorkloads(t *testing.T) {
	a, b := prom.NewWorkload(t), prom.NewWorkload(t)
	s := prom.Start(t,
		prom.Scrape{Job: "shop", Addr: a.Addr(), Labels: map[string]string{"cluster": "a"}},
		prom.Scrape{Job: "shop", Addr: b.Addr(), Labels: map[string]string{"cluster": "b"}},
	)
	a.Add(99, 1)
	b.Add(5, 5)
	a.SetGauge("ferry_test_nan", math.NaN())
	s.WaitT(t, `sum(ferry_test_requests_total{cluster="a"})`, func(v float64) bool { return v == 100 }, 10*time.Second)
	s.WaitT(t, `sum(ferry_test_requests_total{cluster="b",code="500"})`, func(v float64) bool { return v == 5 }, 10*time.Second)
	s.WaitT(t, `ferry_test_nan`, math.IsNaN, 10*time.Second)
	if a.Scrapes() == 0 || b.Scrapes() == 0 {
		t.Errorf("scrapes: a %d, b %d", a.Scrapes(), b.Scrapes())
	}
	s.Stop()
	if _, err := s.Query(t.Context(), "up"); err == nil {
		t.Error("query after Stop succeeded")
	}
}
