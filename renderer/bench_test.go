package renderer

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// benchServices is the number of services per migration in the benchmarks:
// two migrations between two different cluster pairs, so each of the four
// clusters holds 2,000 services.
const benchServices = 2000

// BenchmarkRenderCold renders 2,000 services × 4 clusters with a fresh
// Renderer each time.
func BenchmarkRenderCold(b *testing.B) {
	repo := bigRepo(benchServices, plans.Linkerd, plans.Istio)
	st := allAt(repo, 2)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := New().Render(repo, st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderOneChange renders the same repository after one service
// moved a step, on a warm Renderer. Each iteration renders a freshly
// loaded copy of the repository (new pointers, as after a git poll) where
// a different service moved, so nothing is found by identity.
func BenchmarkRenderOneChange(b *testing.B) {
	repo := bigRepo(benchServices, plans.Linkerd, plans.Istio)
	base := allAt(repo, 2)
	r := New()
	if _, err := r.Render(repo, base); err != nil {
		b.Fatal(err)
	}
	const copies = 64
	repos := make([]*plans.Repository, copies)
	stepsFor := make([]plans.Steps, copies)
	svcs := repo.Migrations[0].Services()
	for i := range repos {
		repos[i] = bigRepo(benchServices, plans.Linkerd, plans.Istio)
		st := plans.Steps{}
		for k, v := range base {
			st[k] = v
		}
		st[plans.ServiceID{Migration: "alpha", Service: svcs[i*7].Ref()}] = 3
		stepsFor[i] = st
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := r.Render(repos[i%copies], stepsFor[i%copies]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkKubectlKustomize times `kubectl kustomize` on one cluster's
// overlay of the benchmark plan (2,000 services, 4,000 objects), as
// WriteDir writes it, and checks it prints manifests.yaml byte for byte.
// Multiply by four for the whole plan.
func BenchmarkKubectlKustomize(b *testing.B) {
	kubectl := kubectlPath(b)
	res, err := Render(bigRepo(benchServices, plans.Linkerd, plans.Istio), nil)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := WriteDir(res, dir); err != nil {
		b.Fatal(err)
	}
	c := res.Clusters[0]
	b.ReportMetric(float64(len(c.Objects)), "objects")
	b.ResetTimer()
	for b.Loop() {
		out := kubectlKustomize(b, kubectl, filepath.Join(dir, c.Name))
		if !bytes.Equal(out, c.Manifests) {
			b.Fatalf("cluster %s: kubectl kustomize differs from manifests.yaml", c.Name)
		}
	}
}

// BenchmarkKrustyBuild times krusty in process on the same overlay.
func BenchmarkKrustyBuild(b *testing.B) {
	res, err := Render(bigRepo(benchServices, plans.Linkerd, plans.Istio), nil)
	if err != nil {
		b.Fatal(err)
	}
	c := res.Clusters[0]
	b.ReportMetric(float64(len(c.Objects)), "objects")
	b.ResetTimer()
	for b.Loop() {
		m, err := buildKrusty(c.Files)
		if err != nil {
			b.Fatal(err)
		}
		y, err := m.AsYaml()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(y, c.Manifests) {
			b.Fatalf("cluster %s: krusty differs from the fast path", c.Name)
		}
	}
}

// BenchmarkRenderOneAdded renders after a service was added to a wave: the
// two clusters it lands in are re-sorted and get a new kustomization.yaml.
func BenchmarkRenderOneAdded(b *testing.B) {
	base := bigRepo(benchServices, plans.Linkerd, plans.Istio)
	r := New()
	if _, err := r.Render(base, nil); err != nil {
		b.Fatal(err)
	}
	const copies = 16
	repos := make([]*plans.Repository, copies)
	for i := range repos {
		repos[i] = bigRepo(benchServices, plans.Linkerd, plans.Istio)
		w := repos[i].Migrations[0].Waves[0]
		w.Services = append(w.Services, &plans.Service{Namespace: "team-00", Name: fmt.Sprintf("added-%d", i), Port: 80})
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := r.Render(repos[i%copies], nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
