package renderer

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// BenchmarkMemoryHeld2000x4 renders 2,000 services × 4 clusters on a warm
// Renderer and, after the loop, reports what the test process holds with
// the plan, the Renderer and the last Result alive: the Go heap in use
// after a forced GC, and on Linux the resident set (VmRSS, after returning
// freed pages to the kernel) and its peak (VmHWM). These are figures of
// the test process, not of the ferry binary; run this benchmark alone in
// its process (-bench '^BenchmarkMemoryHeld2000x4$') or VmHWM includes
// what earlier benchmarks used.
func BenchmarkMemoryHeld2000x4(b *testing.B) {
	repo := bigRepo(benchServices, plans.Linkerd, plans.Istio)
	st := allAt(repo, 2)
	r := New()
	var res *Result
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if res, err = r.Render(repo, st); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	objects := 0
	for _, c := range res.Clusters {
		objects += len(c.Objects)
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(objects), "objects")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
	if rss, ok := procStatusMiB("VmRSS"); ok {
		b.ReportMetric(rss, "rss-MiB")
	}
	if hwm, ok := procStatusMiB("VmHWM"); ok {
		b.ReportMetric(hwm, "peak-rss-MiB")
	}
	runtime.KeepAlive(repo)
	runtime.KeepAlive(r)
	runtime.KeepAlive(res)
}

// procStatusMiB reads a "kB" field of /proc/self/status in MiB; false off
// Linux.
func procStatusMiB(field string) (float64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok || string(name) != field {
			continue
		}
		kb, err := strconv.ParseFloat(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 64)
		if err != nil {
			return 0, false
		}
		return kb / 1024, true
	}
	return 0, false
}
