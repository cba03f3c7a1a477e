package renderer

import (
	"bytes"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// resultBytes is everything a result holds, as bytes.
func resultBytes(res *Result) []byte {
	var b bytes.Buffer
	for _, c := range res.Clusters {
		fmt.Fprintf(&b, "== %s customized=%v\n", c.Name, c.Customized)
		for _, p := range sortedKeys(c.Files) {
			fmt.Fprintf(&b, "-- %s\n%s", p, c.Files[p])
		}
		fmt.Fprintf(&b, "-- manifests\n%s", c.Manifests)
		for _, o := range c.Objects {
			fmt.Fprintf(&b, "-- object %s %s %s %s %s %s %v\n%s", o.APIVersion, o.Kind, o.Namespace, o.Name, o.Migration, o.Service, o.Partial, o.YAML)
		}
	}
	return b.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := keys(m)
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

func TestDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		repo, st := randomRepo(rand.New(rand.NewSource(seed)), 50)
		want := resultBytes(mustRender(t, New(), repo, st))
		for i := 0; i < 3; i++ {
			// A fresh copy: maps iterate in a new order.
			repo2, st2 := randomRepo(rand.New(rand.NewSource(seed)), 50)
			if got := resultBytes(mustRender(t, New(), repo2, st2)); !bytes.Equal(want, got) {
				t.Fatalf("seed %d: render %d differs (-first +again):\n%s", seed, i, lineDiff(string(want), string(got)))
			}
		}
	}
}

func mustRender(t testing.TB, r *Renderer, repo *plans.Repository, st plans.Steps) *Result {
	t.Helper()
	res, err := r.Render(repo, st)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestCacheMatchesFreshRender changes a plan at random, step after step,
// and checks that a warm Renderer gives what a fresh one gives.
func TestCacheMatchesFreshRender(t *testing.T) {
	rng := rand.New(rand.NewSource(99))
	repo, st := randomRepo(rng, 30)
	warm := New()
	pick := func(i int) *plans.Service {
		svcs := repo.Migrations[i].Services()
		return svcs[rng.Intn(len(svcs))]
	}
	mutations := []func(){
		func() { // a promotion
			m := repo.Migrations[rng.Intn(2)]
			s := m.Services()[rng.Intn(len(m.Services()))]
			st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = rng.Intn(len(m.Steps))
		},
		func() { pick(0).Port = 1000 + rng.Intn(50) },
		func() { pick(1).TargetPort = 2000 + rng.Intn(50) },
		func() {
			pick(0).PodSelector = map[string]string{"app": fmt.Sprint("x", rng.Intn(5))}
		},
		func() { pick(1).Aliases = []string{fmt.Sprint("a", rng.Intn(5), ".example")} },
		func() { pick(0).Hostname = fmt.Sprint("h", rng.Intn(5), ".example") },
		func() { // a service leaves a wave
			w := repo.Migrations[1].Waves[rng.Intn(10)]
			if len(w.Services) > 1 {
				w.Services = w.Services[1:]
			}
		},
		func() { // another provider or mode
			m := repo.Migrations[rng.Intn(2)]
			m.Provider = []plans.Provider{plans.Linkerd, plans.Istio, plans.GatewayAPI, plans.MCS}[rng.Intn(4)]
			m.Linkerd.Split = []string{"smi", "httproute"}[rng.Intn(2)]
			m.Istio.Mode = []string{"ambient", "sidecar"}[rng.Intn(2)]
			m.GatewayAPI.Route = []string{"http", "grpc"}[rng.Intn(2)]
			for _, s := range m.Services() {
				st[plans.ServiceID{Migration: m.Name, Service: s.Ref()}] = 0
			}
			m.Steps = steps(m.Provider)
		},
		func() {
			repo.Migrations[0].Waves[rng.Intn(10)].IstioMode = []string{"", "ambient", "sidecar"}[rng.Intn(3)]
		},
		func() { repo.Migrations[1].KubeSlice.Slice = fmt.Sprint("slice-", rng.Intn(3)) },
		func() { repo.Migrations[0].ExternalDNS.Domain = fmt.Sprint("d", rng.Intn(3), ".example") },
		func() { // an overlay comes, changes or goes
			switch rng.Intn(3) {
			case 0:
				repo.Overlays = nil
			default:
				repo.Overlays = map[string]map[string][]byte{"gke": {"kustomization.yaml": []byte(
					"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- cm.yaml\n"),
					"cm.yaml": []byte(fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\n", rng.Intn(3)))}}
			}
		},
	}
	for i := 0; i < 150; i++ {
		mutations[rng.Intn(len(mutations))]()
		got, errW := warm.Render(repo, st)
		want, errF := New().Render(repo, st)
		if (errW == nil) != (errF == nil) {
			t.Fatalf("step %d: warm error %v, fresh error %v", i, errW, errF)
		}
		if errF != nil {
			t.Fatalf("step %d: %v", i, errF)
		}
		if w, g := resultBytes(want), resultBytes(got); !bytes.Equal(w, g) {
			t.Fatalf("step %d: warm render differs (-fresh +warm):\n%s", i, lineDiff(string(w), string(g)))
		}
	}
}

func TestRenderErrors(t *testing.T) {
	cases := []struct {
		name    string
		variant int
		edit    func(repo *plans.Repository, st plans.Steps)
		want    string
	}{
		{"linkerd mirror", 0, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].Steps = append(repo.Migrations[0].Steps, plans.Step{Weight: 0, Mirror: 10})
			st[plans.ServiceID{Migration: repo.Migrations[0].Name, Service: "shop/web"}] = len(repo.Migrations[0].Steps) - 1
		}, "provider linkerd cannot mirror traffic"},
		{"cilium weight", 10, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].Steps = []plans.Step{{Weight: 0}, {Weight: 50}, {Weight: 100}}
			st[plans.ServiceID{Migration: repo.Migrations[0].Name, Service: "shop/web"}] = 1
		}, "cilium cannot split traffic by weight; step 50"},
		{"step out of range", 3, func(repo *plans.Repository, st plans.Steps) {
			st[plans.ServiceID{Migration: repo.Migrations[0].Name, Service: "shop/cart"}] = 9
		}, "service shop/cart: step 9 out of range"},
		{"weight out of range", 3, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].Steps[2].Weight = 120
			st[plans.ServiceID{Migration: repo.Migrations[0].Name, Service: "shop/cart"}] = 2
		}, "weight 120 is not a percentage"},
		{"unknown cluster", 3, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].To = "aks"
		}, `no cluster "aks"`},
		{"name too long", 3, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].Waves[0].Services[0].Name = strings.Repeat("w", 60)
		}, "longer than 63 characters"},
		{"unknown linkerd split", 0, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].Linkerd.Split = "both"
		}, `linkerd split "both"`},
		{"no domain", 11, func(repo *plans.Repository, st plans.Steps) {
			repo.Migrations[0].ExternalDNS.Domain = ""
		}, "no hostname and the migration no domain"},
		{"same service twice in a cluster", 3, func(repo *plans.Repository, st plans.Steps) {
			m2 := testMigration("again", "eks", "dc1", plans.Istio)
			repo.Migrations = append(repo.Migrations, m2)
		}, "a service may be in one migration per cluster"},
		{"overlay for unknown cluster", 3, func(repo *plans.Repository, st plans.Steps) {
			repo.Overlays = map[string]map[string][]byte{"aks": {}}
		}, `overlays/aks: no cluster "aks"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := testRepo(variants[c.variant])
			st := allAt(repo, 0)
			c.edit(repo, st)
			_, err := Render(repo, st)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want one containing %q", err, c.want)
			}
		})
	}
}

func TestMissingStepIsZero(t *testing.T) {
	repo := testRepo(variants[0])
	a := mustRender(t, New(), repo, nil)
	b := mustRender(t, New(), repo, allAt(repo, 0))
	if !bytes.Equal(resultBytes(a), resultBytes(b)) {
		t.Fatal("a service without a step is not rendered at step 0")
	}
}

func TestEmptyCluster(t *testing.T) {
	repo := testRepo(variants[0])
	repo.Clusters["idle"] = &plans.Cluster{Name: "idle"}
	res := mustRender(t, New(), repo, nil)
	c := res.Cluster("idle")
	if c == nil || len(c.Manifests) != 0 || len(c.Objects) != 0 || len(c.Files) != 1 {
		t.Fatalf("idle cluster: %+v", c)
	}
}
