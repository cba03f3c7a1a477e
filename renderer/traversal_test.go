package renderer

import (
	"strings"
	"testing"
)

// TestCustomizationPathTraversal checks that a user overlay cannot make
// the build read outside overlays/<cluster>/ (issue #9, bad input): a
// kustomization naming ../../etc/passwd or an absolute path as a
// resource, a patch or a generator's file, and an overlay file whose own
// path climbs out, are all refused with an error naming the overlay and
// the path — and nothing of the machine's /etc/passwd ever reaches the
// output, because the build runs on an in-memory filesystem holding only
// the overlay's files.
func TestCustomizationPathTraversal(t *testing.T) {
	base := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	cases := []struct {
		name  string
		kust  string
		files map[string]string
		want  []string
	}{
		{name: "resource climbing out", kust: base + "resources:\n- ../../etc/passwd\n",
			want: []string{"overlays/eks: kustomize build", "etc/passwd"}},
		{name: "resource absolute", kust: base + "resources:\n- /etc/passwd\n",
			want: []string{"overlays/eks: kustomize build", "/etc/passwd"}},
		{name: "directory climbing out", kust: base + "resources:\n- ../../../\n",
			want: []string{"overlays/eks: kustomize build"}},
		{name: "patch file climbing out", kust: base + "patches:\n- path: ../../etc/passwd\n",
			want: []string{"overlays/eks: kustomize build", "etc/passwd"}},
		{name: "generator file absolute", kust: base + "configMapGenerator:\n- name: stolen\n  namespace: shop\n  files:\n  - /etc/passwd\n",
			want: []string{"overlays/eks: kustomize build", "/etc/passwd"}},
		{name: "overlay file climbing out", kust: base, files: map[string]string{"../escape.yaml": "a: b\n"},
			want: []string{"overlays/eks", `"../escape.yaml"`, "clean relative path"}},
		{name: "overlay file absolute", kust: base, files: map[string]string{"/etc/passwd": "a: b\n"},
			want: []string{"overlays/eks", `"/etc/passwd"`, "clean relative path"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := testRepo(variants[0])
			files := map[string][]byte{"kustomization.yaml": []byte(c.kust)}
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
			t.Log(err)
			if strings.Contains(err.Error(), "root:") {
				t.Errorf("the error shows the machine's /etc/passwd: %v", err)
			}
		})
	}
}
