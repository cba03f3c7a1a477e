package deploy_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestSettingsAreFlags checks the Deployment's arguments and the example
// config file against the flags of the ferry binary built from this
// checkout: `ferry run --help` must know every flag and every config key
// (the config file's keys are the flags' names), and name the environment
// variables the Deployment sets from the Secret.
func TestSettingsAreFlags(t *testing.T) {
	objs := build(t)
	dep, _ := one[appsv1.Deployment](t, objs, "Deployment")
	cm, _ := one[corev1.ConfigMap](t, objs, "ConfigMap")

	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("container args %v, want ferry run", c.Args)
	}
	help, err := exec.CommandContext(t.Context(), bin, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("ferry run --help: %v\n%s", err, help)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		flags[m[1]] = true
	}
	if !flags["help"] {
		t.Fatalf("no flags found in ferry run --help:\n%s", help)
	}
	for _, a := range c.Args[1:] {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			t.Errorf("container arg %q is not a --flag", a)
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !flags[name] {
			t.Errorf("container arg %s: ferry run has no flag --%s", a, name)
		}
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	for k := range cfg {
		if !flags[k] || k == "config" {
			t.Errorf("config.yaml: %s is not a flag of ferry run", k)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !strings.Contains(string(help), e.Name) {
			t.Errorf("env %s: ferry run --help does not mention it", e.Name)
		}
	}
}
