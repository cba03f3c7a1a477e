package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/reconciler/state"
)

func TestHistory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for _, args := range [][]string{
		{"pause", "onprem-to-eks/backends", "--by", "alice", "--reason", "incident 42"},
		{"approve", "onprem-to-eks/shop/catalog", "--step", "50", "--by", "bob"},
		{"resume", "onprem-to-eks", "--by", "carol"},
	} {
		if code, _, errs := ferry(t, dir, args...); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	tests := []struct {
		target string
		want   []string // reasons, in order
	}{
		{"onprem-to-eks", []string{
			"pause onprem-to-eks/backends: incident 42",
			"approve onprem-to-eks/shop/catalog step 50",
			"resume onprem-to-eks",
		}},
		{"onprem-to-eks/shop/catalog", []string{
			"approve onprem-to-eks/shop/catalog step 50",
			"resume onprem-to-eks",
		}},
		{"onprem-to-eks/backends", []string{
			"pause onprem-to-eks/backends: incident 42",
			"resume onprem-to-eks",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			code, out, errs := ferry(t, dir, "history", tt.target, "-o", "json")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var events []state.Event
			if err := json.Unmarshal([]byte(out), &events); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range events {
				got = append(got, e.Reason)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}

	_, out, _ := ferry(t, dir, "history", "onprem-to-eks", "-n", "1")
	if strings.Contains(out, "alice") || !strings.Contains(out, "carol") {
		t.Errorf("history -n 1 is not the last event:\n%s", out)
	}

	_, out, _ = ferry(t, dir, "history", "onprem-to-eks")
	for _, want := range []string{"TIME", "request", "alice", "bob", "carol", "wave backends", "shop/catalog"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
