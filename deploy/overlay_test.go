package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestREADMEOverlay builds the overlay deploy/README.md shows, with its
// remote base replaced by this directory: the image is renamed and the
// config replaced, under a new content hash.
func TestREADMEOverlay(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var kustomization, config string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		switch {
		case strings.Contains(m[1], "kind: Kustomization"):
			kustomization = m[1]
		case strings.HasPrefix(m[1], "url: "):
			config = m[1]
		}
	}
	if kustomization == "" || config == "" {
		t.Fatal("README.md shows no overlay kustomization.yaml and config.yaml")
	}
	base, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	remote := regexp.MustCompile(`(?m)^  - https://github\.com/ferry-dev/ferry//deploy\?ref=\S+.*$`)
	if !remote.MatchString(kustomization) {
		t.Fatalf("the overlay's resources do not name the remote base:\n%s", kustomization)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base) // kustomize takes no absolute base
	if err != nil {
		t.Fatal(err)
	}
	kustomization = remote.ReplaceAllString(kustomization, "  - "+rel)
	for name, content := range map[string]string{"kustomization.yaml": kustomization, "config.yaml": config} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build of the README's overlay: %v", err)
	}
	yml, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	var cm corev1.ConfigMap
	for _, doc := range strings.Split(string(yml), "\n---\n") {
		switch {
		case strings.Contains(doc, "kind: Deployment"):
			if err := yaml.Unmarshal([]byte(doc), &dep); err != nil {
				t.Fatal(err)
			}
		case strings.Contains(doc, "kind: ConfigMap"):
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "registry.example.com/ferry:") {
		t.Errorf("image %s: the overlay's images: did not apply", img)
	}
	if cm.Data["config.yaml"] != config {
		t.Errorf("config.yaml = %q, want the overlay's %q", cm.Data["config.yaml"], config)
	}
	baseCM, _ := one[corev1.ConfigMap](t, build(t), "ConfigMap")
	if cm.Name == baseCM.Name || !strings.HasPrefix(cm.Name, "ferry-config-") {
		t.Errorf("ConfigMap %s (base %s): want a new ferry-config-<hash>", cm.Name, baseCM.Name)
	}
	if v := dep.Spec.Template.Spec.Volumes; !strings.Contains(toYAML(t, v), cm.Name) {
		t.Errorf("the Deployment does not mount ConfigMap %s", cm.Name)
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
