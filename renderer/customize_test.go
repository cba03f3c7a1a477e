package renderer

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// customOverlay is a user's overlays/eks/kustomization.yaml: an annotation
// on everything, a request timeout on one route, and an object of its own.
const customOverlay = `# the team's additions
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
commonAnnotations:
  team: shop
patches:
- target:
    kind: HTTPRoute
    name: web
  patch: |-
    - op: add
      path: /spec/rules/0/timeouts
      value:
        request: 10s
resources:
- extra.yaml
`

const extraObject = `apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-notes
  namespace: shop
data:
  owner: shop-team
`

// customizedRepo is the Istio ambient test plan with an overlay for eks.
func customizedRepo(t testing.TB, kustomization string) *plans.Repository {
	t.Helper()
	repo := testRepo(variants[3])
	if repo.Migrations[0].Provider != plans.Istio || repo.Migrations[0].Istio.Mode != "ambient" {
		t.Fatal("variants[3] is expected to be istio-ambient")
	}
	repo.Overlays = map[string]map[string][]byte{
		"eks": {"kustomization.yaml": []byte(kustomization), "extra.yaml": []byte(extraObject)},
	}
	return repo
}

func TestCustomizationComposed(t *testing.T) {
	repo := customizedRepo(t, customOverlay)
	res, err := Render(repo, allAt(repo, 3))
	if err != nil {
		t.Fatal(err)
	}
	eks := res.Cluster("eks")
	if !eks.Customized || res.Cluster("dc1").Customized {
		t.Fatalf("customized: eks %v, dc1 %v; want true, false", eks.Customized, res.Cluster("dc1").Customized)
	}
	if _, ok := eks.Files["ferry/kustomization.yaml"]; !ok {
		t.Errorf("ferry's overlay is not under ferry/: %v", keys(eks.Files))
	}
	if k := string(eks.Files["kustomization.yaml"]); !strings.Contains(k, "- ferry\n") || !strings.Contains(k, "# the team's additions") {
		t.Errorf("user kustomization does not name ferry/ or lost its comment:\n%s", k)
	}
	var sawRoute, sawExtra bool
	for _, o := range parseObjects(t, eks) {
		if str(dig(o.m, "metadata", "annotations", "team")) != "shop" {
			t.Errorf("%s %s: commonAnnotations not applied", o.Kind, o.Name)
		}
		switch {
		case o.Kind == "HTTPRoute" && o.Name == "web":
			sawRoute = true
			if str(dig(o.m, "spec", "rules", 0, "timeouts", "request")) != "10s" {
				t.Errorf("patch not applied to HTTPRoute web:\n%s", o.YAML)
			}
			if o.Migration != repo.Migrations[0].Name || o.Service != "shop/web" {
				t.Errorf("HTTPRoute web: migration %q service %q", o.Migration, o.Service)
			}
		case o.Kind == "ConfigMap":
			sawExtra = true
			if o.Migration != "" || o.Partial {
				t.Errorf("user object attributed to ferry: %+v", o.Object)
			}
		}
	}
	if !sawRoute || !sawExtra {
		t.Errorf("route %v, extra object %v; want both", sawRoute, sawExtra)
	}
	// The composed build is what the overlay builds.
	m, err := buildKrusty(eks.Files)
	if err != nil {
		t.Fatal(err)
	}
	y, _ := m.AsYaml()
	if string(y) != string(eks.Manifests) {
		t.Errorf("manifests are not the build of the files")
	}

	// Naming ferry/ explicitly is the same.
	explicit := strings.Replace(customOverlay, "resources:\n", "resources:\n- ./ferry\n", 1)
	repo2 := customizedRepo(t, explicit)
	res2, err := Render(repo2, allAt(repo2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if string(res2.Cluster("eks").Manifests) != string(eks.Manifests) {
		t.Errorf("resources: [./ferry] builds differently from an implicit ferry/")
	}
}

func TestCustomizationRefused(t *testing.T) {
	base := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	cases := []struct {
		name    string
		variant int // index into variants
		kust    string
		files   map[string]string
		want    []string
	}{
		{
			name: "weight", variant: 3,
			kust: base + `patches:
- target: {kind: HTTPRoute, name: web}
  patch: |-
    - op: replace
      path: /spec/rules/0/backendRefs/0/weight
      value: 7
`,
			want: []string{"overlays/eks", "HTTPRoute shop/web", "spec.rules[*].backendRefs", "weights, backends"},
		},
		{
			name: "backend", variant: 0,
			kust: base + `patches:
- target: {kind: TrafficSplit, name: cart}
  patch: |-
    - op: replace
      path: /spec/backends/1/service
      value: cart
`,
			want: []string{"overlays/eks", "TrafficSplit shop/cart", "spec"},
		},
		{
			name: "ferry label", variant: 3,
			kust: base + "labels:\n- pairs:\n    app.kubernetes.io/managed-by: argocd\n",
			want: []string{"overlays/eks", "metadata.labels[app.kubernetes.io/managed-by]", `"ferry"`, `"argocd"`},
		},
		{
			name: "selector via commonLabels", variant: 3,
			kust: base + "commonLabels:\n  env: prod\n",
			want: []string{"overlays/eks", "Service shop/", "spec"},
		},
		{
			name: "rename", variant: 3,
			kust: base + "namePrefix: x-\n",
			want: []string{"overlays/eks", "removes or renames", "shop/"},
		},
		{
			name: "delete", variant: 3,
			kust: base + "patches:\n- patch: |-\n    $patch: delete\n    apiVersion: v1\n    kind: Service\n    metadata:\n      name: web-eks\n      namespace: shop\n",
			want: []string{"overlays/eks", "removes or renames Service shop/web-eks", "shop/web"},
		},
		{
			name: "partial annotated", variant: 2, // linkerd remote-discovery
			kust: base + "commonAnnotations:\n  team: shop\n",
			want: []string{"overlays/eks", "Service shop/", "metadata.annotations", "team"},
		},
		{
			name: "partial given a spec", variant: 11, // external-dns
			kust: base + "patches:\n- target: {kind: Service, name: web}\n  patch: |-\n    - op: add\n      path: /spec\n      value: {type: LoadBalancer}\n",
			want: []string{"overlays/eks", "Service shop/web is not ferry's", "adds spec"},
		},
		{
			name: "reserved path", variant: 3, kust: base,
			files: map[string]string{"ferry/x.yaml": "a: b\n"},
			want:  []string{"overlays/eks", "ferry/x.yaml", "reserved"},
		},
		{
			name: "no kustomization", variant: 3, kust: "",
			want: []string{"overlays/eks: no kustomization.yaml"},
		},
		{
			name: "broken", variant: 3, kust: base + "resources:\n- missing.yaml\n",
			want: []string{"overlays/eks: kustomize build", "missing.yaml"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := testRepo(variants[c.variant])
			files := map[string][]byte{}
			if c.kust != "" {
				files["kustomization.yaml"] = []byte(c.kust)
			}
			for p, b := range c.files {
				files[p] = []byte(b)
			}
			repo.Overlays = map[string]map[string][]byte{"eks": files}
			res, err := Render(repo, allAt(repo, 2))
			if err == nil {
				t.Fatalf("render succeeded; want an error. eks:\n%s", res.Cluster("eks").Manifests)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
