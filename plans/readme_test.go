package plans_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/ferry-dev/ferry/plans"
)

// TestREADMEPlan keeps the README's plan tour valid: every ```yaml block of
// README.md loads without an error.
func TestREADMEPlan(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```yaml block")
	}
	for i, m := range blocks {
		if _, err := plans.LoadFiles(map[string][]byte{"plan.yaml": m[1]}); err != nil {
			t.Errorf("README.md yaml block %d: %v", i+1, err)
		}
	}
}
