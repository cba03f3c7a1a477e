package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

// migration returns a migration with the given steps and one service per
// ref, all in wave "w".
func migration(steps []int, refs ...string) *plans.Migration {
	m := &plans.Migration{Name: "m"}
	for _, w := range steps {
		m.Steps = append(m.Steps, plans.Step{Weight: w})
	}
	w := &plans.Wave{Name: "w"}
	for _, ref := range refs {
		ns, name, _ := strings.Cut(ref, "/")
		w.Services = append(w.Services, &plans.Service{Namespace: ns, Name: name, Wave: "w"})
	}
	m.Waves = []*plans.Wave{w}
	return m
}

func TestServiceChanges(t *testing.T) {
	for _, tc := range []struct {
		name       string
		base, head []int
		bw, hw     int // cart's weight at base and head
		want       []planChange
	}{
		{name: "same weight", base: []int{0, 25, 100}, head: []int{0, 50, 100}, bw: 0, hw: 0},
		{name: "one step", base: []int{0, 25, 100}, head: []int{0, 50, 100}, bw: 25, hw: 50,
			want: []planChange{{Kind: "weight", Subject: "m/shop/cart", Base: "25%", Head: "50%"}}},
		{name: "two steps at once", base: []int{0, 50, 100}, head: []int{0, 10, 20, 50, 100}, bw: 0, hw: 20,
			want: []planChange{{Kind: "weight", Subject: "m/shop/cart", Base: "0%", Head: "20%", Risk: "moves 2 steps at once"}}},
		{name: "two steps down", base: []int{0, 10, 20, 100}, head: []int{0, 10, 20, 100}, bw: 20, hw: 0,
			want: []planChange{{Kind: "weight", Subject: "m/shop/cart", Base: "20%", Head: "0%", Risk: "moves 2 steps at once"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bm, hm := migration(tc.base, "shop/cart"), migration(tc.head, "shop/cart")
			bp := map[string]plans.Progress{"shop/cart": {Weight: tc.bw}}
			hp := map[string]plans.Progress{"shop/cart": {Weight: tc.hw}}
			if diff := cmp.Diff(tc.want, serviceChanges(bm, hm, bp, hp)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestServicesAddedRemoved(t *testing.T) {
	bm, hm := migration([]int{0, 100}, "shop/cart", "shop/pricing"), migration([]int{0, 100}, "shop/cart", "shop/returns")
	want := []planChange{
		{Kind: "service added", Subject: "m/shop/returns", Head: "wave w"},
		{Kind: "service removed", Subject: "m/shop/pricing", Base: "wave w", Risk: "goes back to 0%, then its objects are pruned"},
	}
	if diff := cmp.Diff(want, serviceChanges(bm, hm, nil, nil)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestStepChanges(t *testing.T) {
	for _, tc := range []struct {
		name       string
		base, head []int
		weight     int // of every service, on both sides
		risk       string
	}{
		{name: "unchanged", base: []int{0, 25, 100}, head: []int{0, 25, 100}},
		{name: "smaller moves", base: []int{0, 50, 100}, head: []int{0, 25, 50, 100}, risk: ""},
		{name: "next move grows", base: []int{0, 5, 25, 100}, head: []int{0, 50, 100},
			risk: "the next move grows to +50% for shop/a, shop/b, shop/c and 1 more"},
		{name: "next move same, later move grows", base: []int{0, 25, 50, 75, 100}, head: []int{0, 25, 100}, weight: 0,
			risk: "the largest move grows from +25% to +75%"},
		{name: "from the current weight", base: []int{0, 25, 50, 75, 100}, head: []int{0, 25, 50, 100}, weight: 50,
			risk: "the next move grows to +50% for shop/a, shop/b, shop/c and 1 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refs := []string{"shop/a", "shop/b", "shop/c", "shop/d"}
			bm, hm := migration(tc.base, refs...), migration(tc.head, refs...)
			p := map[string]plans.Progress{}
			for _, r := range refs {
				p[r] = plans.Progress{Weight: tc.weight}
			}
			got := stepChanges(bm, hm, p, p)
			if slices.Equal(tc.base, tc.head) {
				if len(got) != 0 {
					t.Fatalf("changes for equal steps: %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("changes: %+v, want one", got)
			}
			if got[0].Risk != tc.risk {
				t.Errorf("risk %q, want %q", got[0].Risk, tc.risk)
			}
		})
	}
}

func TestSetChanges(t *testing.T) {
	b := map[string]string{"soak": "soak 10m0s", "errors": "prometheus <= 0.01: q", "api/owner": "approval"}
	h := map[string]string{"soak": "soak 5m0s", "latency": "prometheus <= 0.5: q", "api/owner": "approval"}
	want := []planChange{
		{Kind: "gate added", Subject: "m/latency", Head: "prometheus <= 0.5: q"},
		{Kind: "gate changed", Subject: "m/soak", Base: "soak 10m0s", Head: "soak 5m0s"},
		{Kind: "gate removed", Subject: "m/errors", Base: "prometheus <= 0.01: q", Risk: "unguarded"},
	}
	if diff := cmp.Diff(want, setChanges("gate", "m", b, h, "unguarded")); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestFlagChanges(t *testing.T) {
	bm, hm := migration([]int{0, 100}, "shop/cart"), migration([]int{0, 100}, "shop/cart")
	bm.Paused = true
	hm.Waves[0].Rollback = true
	hm.Waves[0].Services[0].Rollback = true
	want := []planChange{
		{Kind: "paused lifted", Subject: "m", Base: "true", Head: "false"},
		{Kind: kindRollback, Subject: "m/w", Base: "false", Head: "true", Risk: "sends every service of the wave back to 0%"},
		{Kind: kindRollback, Subject: "m/shop/cart", Base: "false", Head: "true", Risk: "sends the service back to 0%"},
	}
	if diff := cmp.Diff(want, flagChanges(bm, hm)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestMarkdownHelpers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{mdCode("0 10 * * 1-5"), "`0 10 * * 1-5`"},
		{mdCode("a|b"), "`a\\|b`"},
		{mdCode("say `hi`"), "`` say `hi` ``"},
		{mdCell(""), "—"},
		{mdText("<b>*x*</b>"), "&lt;b&gt;\\*x\\*&lt;/b&gt;"},
		{mdFence("plain"), "```"},
		{mdFence("has ``` and ````"), "`````"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		n    int
		want string
		cut  int
	}{
		{"a\nb\nc\n", 5, "a\nb\nc\n", 0},
		{"a\nb\nc\n", 2, "a\nb\n", 1},
		{"a\nb\nc", 1, "a\n", 2},
	} {
		got, cut := truncateLines(tc.in, tc.n)
		if got != tc.want || cut != tc.cut {
			t.Errorf("truncateLines(%q, %d) = %q, %d; want %q, %d", tc.in, tc.n, got, cut, tc.want, tc.cut)
		}
	}
}

// TestMarkdownSize checks that a comment about huge diffs stays under
// GitHub's 65,536 characters and says where the rest is.
func TestMarkdownSize(t *testing.T) {
	huge := "--- a\n+++ b\n@@ -1 +1 @@\n" + strings.Repeat("+"+strings.Repeat("x", 100)+"\n", 2000)
	c := &comparison{Base: "main (1234567)", Head: workingTree, Assumed: "0"}
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		c.Clusters = append(c.Clusters, clusterDiff{Cluster: name, Diff: huge, Changed: []string{"x"}})
	}
	var b bytes.Buffer
	if err := writeMarkdown(&b, c); err != nil {
		t.Fatal(err)
	}
	if b.Len() > 65536 {
		t.Errorf("comment is %d bytes", b.Len())
	}
	if got := strings.Count(b.String(), "<details>"); got != 5 {
		t.Errorf("%d <details>, want one per cluster", got)
	}
	if !strings.Contains(b.String(), "2003 more diff lines") || !strings.Contains(b.String(), "1603 more diff lines") {
		t.Errorf("comment does not say what it left out:\n%s", b.String()[b.Len()-2000:])
	}
}

// gitRepo makes a Git repository of plan files in a temporary directory,
// commits them, and returns its path.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, dir, "init", "-q", "-b", "main")
	gitCommit(t, dir, "base")
	return dir
}

const statePlan = `clusters: {onprem: {}, eks: {}}
migrations:
  m:
    from: onprem
    to: eks
    provider: linkerd
    steps: [0, 25, 50, 100]
    waves: [{name: w, services: [shop/cart, shop/pricing]}]
`

// TestRenderBaseStateDir renders both sides at the weights the daemon
// recorded: cart is at 50%, which the head's steps no longer have, so it
// renders at 25% there.
func TestRenderBaseStateDir(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 2, 0, 0, time.UTC)
	stopClock(t, now)
	repo := gitRepo(t, map[string]string{"plans/plan.yaml": statePlan})
	head := strings.Replace(statePlan, "[0, 25, 50, 100]", "[0, 25, 100]", 1)
	if err := os.WriteFile(filepath.Join(repo, "plans", "plan.yaml"), []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	st, err := state.NewBolt(stateDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := plans.NewProgress(now.Add(-time.Hour))
	p.Step, p.Weight, p.State = 2, 50, plans.StateProgressing
	if _, err := st.Save(t.Context(), state.Change{Migration: "m", At: now, Services: map[string]plans.Progress{"shop/cart": p}}); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	code := run([]string{"render", filepath.Join(repo, "plans"), "--base", "main", "--state-dir", stateDir}, &out, &errb)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"Progress assumed: weights from the progress recorded in " + stateDir + ", every other service at 0.",
		"-    weight: 50\n+    weight: 25\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(`(?m)^weight +m/shop/cart +50% +25%$`).MatchString(out.String()) {
		t.Errorf("no weight change for cart:\n%s", out.String())
	}

	code = run([]string{"render", filepath.Join(repo, "plans"), "--base", "main", "--state-dir", filepath.Join(t.TempDir(), "none")}, &out, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "no state.db") {
		t.Errorf("missing state: exit %d, stderr %q; want %d and a word about state.db", code, errb.String(), ExitUsage)
	}
}

// TestTimelineGolden keeps the timeline of the bundled example, as a table
// and as SVG, in golden files: go test ./cmd/ferry/cli -run TestTimelineGolden -update
func TestTimelineGolden(t *testing.T) {
	stopClock(t, time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC))
	for _, tc := range []struct{ format, file string }{
		{"table", "linkerd-eks.txt"},
		{"svg", "linkerd-eks.svg"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			code, out, errs := ferry(t, filepath.Join(t.TempDir(), "state"), "plan", "timeline", "--format", tc.format)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden := filepath.Join("testdata", "timeline", tc.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), out); diff != "" {
				t.Errorf("%s is stale (-want +got); rewrite with -update:\n%s", golden, diff)
			}
		})
	}
}

func TestMigrationSettingsChanges(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 2, 0, 0, time.UTC)
	bm, hm := migration([]int{0, 100}, "shop/cart"), migration([]int{0, 100}, "shop/cart")
	bm.OnFailure, hm.OnFailure = plans.FailRollback, plans.FailHold
	bm.MaxConcurrent, hm.MaxConcurrent = 1, 1
	hm.Approvals = []plans.Approval{{Wave: "w", Step: 100, By: "maria@example.com"}}
	hm.Window.Deny = []plans.Deny{{Reason: "freeze", From: now, To: now.Add(72 * time.Hour)}}
	var got []planChange
	for _, c := range migrationChanges(now, bm, hm, nil, nil) {
		if c.Kind != "completes" {
			got = append(got, c)
		}
	}
	want := []planChange{
		{Kind: "deny window added", Subject: "m/freeze", Head: "2026-11-23 to 2026-11-26"},
		{Kind: "on failure", Subject: "m", Base: "rollback", Head: "hold"},
		{Kind: "approval added", Subject: "m/w to 100%", Head: "by maria@example.com"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
