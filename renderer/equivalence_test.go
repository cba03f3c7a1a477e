package renderer

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/ferry-dev/ferry/plans"
)

// renderBoth renders with the fast path and with krusty.
func renderBoth(t *testing.T, repo *plans.Repository, st plans.Steps) (fast, slow *Result) {
	t.Helper()
	fast, err := Render(repo, st)
	if err != nil {
		t.Fatal(err)
	}
	k := New()
	k.viaKrusty = true
	slow, err = k.Render(repo, st)
	if err != nil {
		t.Fatal(err)
	}
	return fast, slow
}

func compareResults(t *testing.T, fast, slow *Result) {
	t.Helper()
	if len(fast.Clusters) != len(slow.Clusters) {
		t.Fatalf("fast path has %d clusters, krusty %d", len(fast.Clusters), len(slow.Clusters))
	}
	for i, f := range fast.Clusters {
		s := slow.Clusters[i]
		if !bytes.Equal(f.Manifests, s.Manifests) {
			t.Errorf("cluster %s: fast path differs from krusty (-krusty +fast):\n%s", f.Name, lineDiff(string(s.Manifests), string(f.Manifests)))
			continue
		}
		if diff := cmp.Diff(s.Objects, f.Objects); diff != "" {
			t.Errorf("cluster %s: objects differ (-krusty +fast):\n%s", f.Name, diff)
		}
	}
}

// TestFastPathEqualsKrusty renders every provider at every step with the
// fast path and with krusty and compares the bytes.
func TestFastPathEqualsKrusty(t *testing.T) {
	for _, v := range variants {
		repo := testRepo(v)
		for i, step := range repo.Migrations[0].Steps {
			t.Run(fmt.Sprintf("%s/%s", v.name, step), func(t *testing.T) {
				fast, slow := renderBoth(t, repo, allAt(repo, i))
				compareResults(t, fast, slow)
			})
		}
	}
}

// randomRepo builds a plan of n services per migration with random
// providers, options, steps and awkward label keys and values, to exercise
// key order and scalar quoting.
func randomRepo(rng *rand.Rand, n int) (*plans.Repository, plans.Steps) {
	ps := plans.Providers
	repo := bigRepo(n, ps[rng.Intn(len(ps))], ps[rng.Intn(len(ps))])
	keys := []string{"app", "a9", "a10", "a010", "x/y2", "x/y10", "A", "Z1", "z_1", "z-1", "app.kubernetes.io/name", "tier0", "tier00"}
	vals := []string{"web", "true", "yes", "No", "0o17", "1e3", "null", "", "0x1F", "12", "1_000", "on", "v1.2.3", "a-b", "_x", ".5", "2026-01-02", "3:25:45", "two words", "café", "a: b", "- x"}
	st := plans.Steps{}
	for _, m := range repo.Migrations {
		switch m.Provider {
		case plans.Linkerd:
			m.Linkerd.Split = []string{"smi", "httproute"}[rng.Intn(2)]
			m.Linkerd.Export = []string{"exported", "remote-discovery"}[rng.Intn(2)]
		case plans.Istio:
			m.Istio.Mode = []string{"ambient", "sidecar"}[rng.Intn(2)]
			for _, w := range m.Waves {
				if rng.Intn(3) == 0 {
					w.IstioMode = []string{"ambient", "sidecar"}[rng.Intn(2)]
				}
			}
		case plans.GatewayAPI:
			m.GatewayAPI.Route = []string{"http", "grpc"}[rng.Intn(2)]
		}
		for _, s := range m.Services() {
			if rng.Intn(4) == 0 {
				s.PodSelector = map[string]string{}
				for j := rng.Intn(4); j >= 0; j-- {
					s.PodSelector[keys[rng.Intn(len(keys))]] = vals[rng.Intn(len(vals))]
				}
			}
			if rng.Intn(5) == 0 {
				s.Aliases = []string{s.Name + ".old.example", "true"}
			}
			if rng.Intn(5) == 0 {
				s.Hostname = s.Name + ".Example.COM"
			}
			st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = rng.Intn(len(m.Steps))
		}
	}
	return repo, st
}

func TestFastPathEqualsKrustyRandom(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			n := 100
			if seed == 4 {
				n = 500 // 1,000 to 1,500 objects per cluster
			}
			repo, st := randomRepo(rand.New(rand.NewSource(seed)), n)
			t.Logf("providers %s, %s", repo.Migrations[0].Provider, repo.Migrations[1].Provider)
			fast, slow := renderBoth(t, repo, st)
			compareResults(t, fast, slow)
		})
	}
}

// TestEmitterEqualsReference checks the emitter against the encoding chain
// krusty runs, object by object, and that YAML 1.2 reads the overlay files
// back as the same data.
func TestEmitterEqualsReference(t *testing.T) {
	check := func(t *testing.T, obj mapping) {
		t.Helper()
		out, in, err := encode(newScalars(), obj)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := referenceYAML(obj)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, ref) {
			t.Fatalf("emitter differs from reference (-ref +emitter):\n%s", lineDiff(string(ref), string(out)))
		}
		var back any
		if err := yamlv3.Unmarshal(in, &back); err != nil {
			t.Fatalf("overlay file does not parse: %v\n%s", err, in)
		}
		if diff := cmp.Diff(normalize(t, toPlain(obj)), normalize(t, back)); diff != "" {
			t.Fatalf("overlay file reads back differently (-want +got):\n%s\n%s", diff, in)
		}
	}
	t.Run("rendered", func(t *testing.T) {
		repo, st := randomRepo(rand.New(rand.NewSource(42)), 200)
		r := New()
		r.keepBodies = true
		if _, err := r.Render(repo, st); err != nil {
			t.Fatal(err)
		}
		for _, sh := range r.shards {
			for _, o := range sh.objects {
				check(t, o.body)
			}
		}
	})
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewSource(7))
		alphabet := []string{"a", "b", "Z", "0", "1", "9", "-", ".", "_", "/", ":", " ", "#", "'", "\"", "é", "\t", "\n", "*", "&", "!", "%", "@", "`", "{", "[", ",", "?", "|", ">", "~", "+", "="}
		word := func() string {
			var sb strings.Builder
			for j := rng.Intn(8); j >= 0; j-- {
				sb.WriteString(alphabet[rng.Intn(len(alphabet))])
			}
			return sb.String()
		}
		for i := 0; i < 3000; i++ {
			obj := mapping{{"kind", "X"}}
			inner := mapping{}
			for j := rng.Intn(6); j >= 0; j-- {
				inner = append(inner, field{word(), word()})
			}
			obj = append(obj, field{"data", inner}, field{"list", seq{word(), mapping{{word(), rng.Intn(1000)}, {"b", true}}, mapping{}}})
			obj = dedupe(obj)
			check(t, obj)
		}
	})
}

func dedupe(m mapping) mapping {
	seen := map[string]bool{}
	var out mapping
	for _, f := range m {
		if seen[f.key] {
			continue
		}
		seen[f.key] = true
		if mm, ok := f.val.(mapping); ok {
			f.val = dedupe(mm)
		}
		out = append(out, f)
	}
	return out
}

// normalize makes decoded values comparable: JSON round trip semantics.
func normalize(t *testing.T, v any) any {
	b, err := yamlv2.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := yamlv3.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeyOrder checks keyLess against go-yaml v2's own ordering.
func TestKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	parts := []string{"a", "b", "A", "0", "00", "1", "2", "9", "10", "010", "-", ".", "/", "_", "é", "z", "Z"}
	skipped := 0
	const sets = 3000
	for i := 0; i < sets; i++ {
		m := map[string]int{}
		for j := 0; j < 6; j++ {
			var sb strings.Builder
			for k := rng.Intn(4); k >= 0; k-- {
				sb.WriteString(parts[rng.Intn(len(parts))])
			}
			m[sb.String()] = j
		}
		if !transitive(m) {
			// go-yaml v2's order is not total on such sets ("1Z" < "9.Z"
			// < "10é9" < "1Z"): its own output then depends on map
			// iteration order, so there is nothing to match.
			skipped++
			continue
		}
		b, err := yamlv2.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		var ms yamlv2.MapSlice
		if err := yamlv2.Unmarshal(b, &ms); err != nil {
			t.Fatal(err)
		}
		for _, it := range ms {
			want = append(want, fmt.Sprint(it.Key))
		}
		var fs mapping
		for k := range m {
			fs = append(fs, field{k, 0})
		}
		var got []string
		for _, f := range sortFields(fs) {
			got = append(got, f.key)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("key order differs from go-yaml v2 (-want +got):\n%s", diff)
		}
	}
	if skipped > sets/4 {
		t.Fatalf("%d of %d key sets skipped; the test checks too little", skipped, sets)
	}
}

// transitive reports whether keyLess orders the keys of m consistently.
func transitive[V any](m map[string]V) bool {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for _, a := range ks {
		for _, b := range ks {
			for _, c := range ks {
				if keyLess(a, b) && keyLess(b, c) && !keyLess(a, c) {
					return false
				}
			}
		}
	}
	return true
}

// kubectlPath finds kubectl; the byte-identity test is not skipped when it
// is missing, it fails.
// It prefers the kustomize binary `make testbin` builds from the Go module
// proxy into the test cache, so CI needs no kubectl package.
func kubectlPath(t testing.TB) string {
	t.Helper()
	root := os.Getenv("FERRY_TESTBIN")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "ferry", "testbin")
	}
	if p := filepath.Join(root, "kustomize-v5.8.1", "kustomize"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kustomize is needed to check that `kustomize build` gives the overlays' manifests byte for byte: run \"make testbin\" (builds it into %s) or install kubectl: %v", root, err)
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func kubectlKustomize(t testing.TB, kubectl, dir string) []byte {
	t.Helper()
	cmd := exec.Command(kubectl, "kustomize", dir)
	if filepath.Base(kubectl) == "kustomize" {
		cmd = exec.Command(kubectl, "build", dir)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// TestKubectlKustomizeByteIdentical writes overlays with WriteDir and checks
// that `kubectl kustomize` prints manifests.yaml byte for byte.
func TestKubectlKustomizeByteIdentical(t *testing.T) {
	kubectl := kubectlPath(t)
	var results []*Result
	for _, v := range variants {
		repo := testRepo(v)
		for i := range repo.Migrations[0].Steps {
			res, err := Render(repo, allAt(repo, i))
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, res)
		}
	}
	repo, st := randomRepo(rand.New(rand.NewSource(11)), 60)
	res, err := Render(repo, st)
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, res)
	custom, err := Render(customizedRepo(t, customOverlay), allAt(customizedRepo(t, customOverlay), 2))
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, custom)

	for i, res := range results {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		if err := WriteDir(res, dir); err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Clusters {
			want, err := os.ReadFile(filepath.Join(dir, c.Name, "manifests.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			got := kubectlKustomize(t, kubectl, filepath.Join(dir, c.Name))
			if !bytes.Equal(want, got) {
				t.Errorf("result %d cluster %s: kubectl kustomize differs from manifests.yaml (-manifests +kubectl):\n%s", i, c.Name, lineDiff(string(want), string(got)))
			}
		}
	}
}
