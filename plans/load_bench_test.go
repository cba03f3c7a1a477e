package plans_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// benchPlanFiles is the size of the repository BenchmarkValidate1000Files
// loads: one migration of two services per file, each with a window, a
// deny window and a Prometheus gate, cycling through the weighting
// providers that need no options; the first file also names the four
// clusters.
const benchPlanFiles = 1000

// writePlanRepo writes n YAML plan files under dir/plans/dNN/ and returns
// the plan directory.
func writePlanRepo(tb testing.TB, dir string, n int) string {
	tb.Helper()
	root := filepath.Join(dir, "plans")
	providers := []string{"linkerd", "istio", "mcs", "gateway-api"}
	pairs := [][2]string{{"dc1", "eks"}, {"dc2", "gke"}}
	for i := range n {
		sub := filepath.Join(root, fmt.Sprintf("d%02d", i%50))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			tb.Fatal(err)
		}
		clusters := ""
		if i == 0 {
			clusters = "clusters:\n"
			for _, c := range []string{"dc1", "eks", "dc2", "gke"} {
				clusters += fmt.Sprintf("  %s: {context: %s, prometheus: \"http://prometheus.%s.example:9090\"}\n", c, c, c)
			}
		}
		pair := pairs[i%len(pairs)]
		ns := fmt.Sprintf("team-%03d", i%37)
		data := fmt.Sprintf(`# plan file %[1]d of the validation benchmark
%[2]smigrations:
  move-%04[1]d:
    from: %[3]s
    to: %[4]s
    provider: %[5]s
    steps: [0, 10, 50, 100]
    soak: 10m
    window:
      schedule: ["*/15 9-16 * * 1-5"]
      timezone: Europe/Berlin
      deny:
        - reason: weekly release train
          cron: "0 13 * * 3"
          duration: 2h
    gates:
      - name: success-rate
        prometheus:
          query: 'sum(rate(http_requests_total{namespace="{{.Namespace}}",service="{{.Name}}",code!~"5.."}[5m])) / sum(rate(http_requests_total{namespace="{{.Namespace}}",service="{{.Name}}"}[5m]))'
          op: ">="
          threshold: 0.995
    services:
      %[6]s/api-%04[1]d: {port: 8080, targetPort: 9090}
      %[6]s/db-%04[1]d: {port: 5432, dependsOn: []}
    waves:
      - name: backends
        services: [%[6]s/db-%04[1]d]
      - name: front
        services: [%[6]s/api-%04[1]d]
        maxConcurrent: 1
`, i, clusters, pair[0], pair[1], providers[i%len(providers)], ns)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("move-%04d.yaml", i)), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// BenchmarkValidate1000Files loads and validates a repository of 1,000 plan
// files from disk: walking the tree, reading, CUE schema validation,
// decoding and the semantic checks, as `ferry validate` does. The
// files=100 and files=300 runs show how the cost grows with the number of
// files.
func BenchmarkValidate1000Files(b *testing.B) {
	for _, n := range []int{100, 300, benchPlanFiles} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			fsys := os.DirFS(writePlanRepo(b, b.TempDir(), n))
			b.ReportMetric(float64(n), "files")
			b.ReportAllocs()
			for b.Loop() {
				repo, err := plans.Load(fsys)
				if err != nil {
					b.Fatal(err)
				}
				if len(repo.Migrations) != n {
					b.Fatalf("loaded %d migrations, want %d", len(repo.Migrations), n)
				}
			}
		})
	}
}

// BenchmarkLoadCycles loads the linkerd-eks example (plans, policy and
// overlays) b.N times and reports the Go heap in use after a forced GC
// after the first 100 loads and after all of them. Run it with
// -benchtime 10000x: the two figures must be about equal, because each
// load gets a fresh CUE context that is dropped afterwards (a shared one
// grows with every value).
func BenchmarkLoadCycles(b *testing.B) {
	fsys := os.DirFS(filepath.Join("..", "examples", "linkerd-eks"))
	if _, err := plans.Load(fsys); err != nil {
		b.Fatal(err)
	}
	first := -1.0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := plans.Load(fsys); err != nil {
			b.Fatal(err)
		}
		if i+1 == min(100, b.N) {
			b.StopTimer()
			first = heapInuseMiB()
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(first, "heap-MiB-after-100")
	b.ReportMetric(heapInuseMiB(), "heap-MiB-after-all")
}

// heapInuseMiB returns the Go heap in use after a forced collection.
func heapInuseMiB() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}
