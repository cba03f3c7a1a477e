package renderer

import (
	"fmt"

	"github.com/ferry-dev/ferry/plans"
)

// variant is one provider configuration the tests render.
type variant struct {
	name     string
	provider plans.Provider
	setup    func(m *plans.Migration)
}

var variants = []variant{
	{"linkerd-smi", plans.Linkerd, nil},
	{"linkerd-httproute", plans.Linkerd, func(m *plans.Migration) { m.Linkerd.Split = "httproute" }},
	{"linkerd-remote-discovery", plans.Linkerd, func(m *plans.Migration) { m.Linkerd.Export = "remote-discovery" }},
	{"istio-ambient", plans.Istio, nil},
	{"istio-sidecar", plans.Istio, func(m *plans.Migration) { m.Istio.Mode = "sidecar" }},
	{"istio-wave-to-ambient", plans.Istio, func(m *plans.Migration) {
		m.Istio.Mode = "sidecar"
		m.Waves[1].IstioMode = "ambient"
	}},
	{"gateway-api-http", plans.GatewayAPI, nil},
	{"gateway-api-grpc", plans.GatewayAPI, func(m *plans.Migration) { m.GatewayAPI.Route = "grpc" }},
	{"kubeslice", plans.KubeSlice, nil},
	{"mcs", plans.MCS, nil},
	{"cilium", plans.Cilium, nil},
	{"external-dns", plans.ExternalDNS, nil},
}

// testMigration builds a migration from dc1 to eks of two waves: shop/web
// with defaults, and shop/cart with a target port, pod selector, aliases
// and hostname.
func testMigration(name, from, to string, p plans.Provider) *plans.Migration {
	m := &plans.Migration{
		Name: name, From: from, To: to, Provider: p,
		Linkerd:     plans.LinkerdOptions{Split: "smi", Export: "exported"},
		Istio:       plans.IstioOptions{Mode: "ambient"},
		GatewayAPI:  plans.GatewayAPIOptions{Route: "http"},
		KubeSlice:   plans.KubeSliceOptions{Slice: "shop-slice"},
		ExternalDNS: plans.ExternalDNSOptions{Domain: "example.com"},
		Steps:       steps(p),
	}
	m.Waves = []*plans.Wave{
		{Name: "first", Services: []*plans.Service{
			{Namespace: "shop", Name: "web", Port: 80, Wave: "first"},
		}},
		{Name: "second", Services: []*plans.Service{
			{Namespace: "shop", Name: "cart", Port: 8080, TargetPort: 9090, Wave: "second",
				PodSelector: map[string]string{"app.kubernetes.io/name": "cart", "tier": "backend"},
				Aliases:     []string{"cart.legacy.example"},
				Hostname:    "cart.shop.example.com"},
		}},
	}
	return m
}

// steps returns the steps a provider supports: a mirror step where it can
// mirror, intermediate weights where it can weight.
func steps(p plans.Provider) []plans.Step {
	switch {
	case !p.CanWeight():
		return []plans.Step{{Weight: 0}, {Weight: 100}}
	case p.CanMirror():
		return []plans.Step{{Weight: 0}, {Weight: 0, Mirror: 20}, {Weight: 10}, {Weight: 50}, {Weight: 100}}
	default:
		return []plans.Step{{Weight: 0}, {Weight: 10}, {Weight: 50}, {Weight: 100}}
	}
}

func testRepo(v variant) *plans.Repository {
	m := testMigration("move-"+v.name, "dc1", "eks", v.provider)
	if v.setup != nil {
		v.setup(m)
	}
	return &plans.Repository{
		Clusters: map[string]*plans.Cluster{
			"dc1": {Name: "dc1"},
			"eks": {Name: "eks"},
		},
		Migrations: []*plans.Migration{m},
	}
}

// allAt puts every service of every migration at step index i.
func allAt(repo *plans.Repository, i int) plans.Steps {
	st := plans.Steps{}
	for _, m := range repo.Migrations {
		for _, s := range m.Services() {
			st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = i
		}
	}
	return st
}

// bigRepo builds 2 migrations between different cluster pairs with n
// services each, services spread over namespaces and waves.
func bigRepo(n int, pa, pb plans.Provider) *plans.Repository {
	repo := &plans.Repository{Clusters: map[string]*plans.Cluster{}}
	for _, c := range []string{"dc1", "eks", "dc2", "gke"} {
		repo.Clusters[c] = &plans.Cluster{Name: c}
	}
	for i, spec := range []struct {
		name, from, to string
		p              plans.Provider
	}{{"alpha", "dc1", "eks", pa}, {"beta", "dc2", "gke", pb}} {
		m := testMigration(spec.name, spec.from, spec.to, spec.p)
		m.Waves = nil
		for w := 0; w < 10; w++ {
			wave := &plans.Wave{Name: fmt.Sprintf("wave-%d", w)}
			for j := w; j < n; j += 10 {
				s := &plans.Service{
					Namespace: fmt.Sprintf("team-%02d", j%37),
					Name:      fmt.Sprintf("svc-%d-%04d", i, j),
					Port:      80 + j%3, Wave: wave.Name,
				}
				if j%5 == 0 {
					s.TargetPort = 8080
					s.PodSelector = map[string]string{"app": s.Name, "track": "stable"}
				}
				wave.Services = append(wave.Services, s)
			}
			m.Waves = append(m.Waves, wave)
		}
		repo.Migrations = append(repo.Migrations, m)
	}
	return repo
}
