package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/reconciler/gates"
	"github.com/ferry-dev/ferry/reconciler/source"
	"github.com/ferry-dev/ferry/reconciler/state"
)

func init() { register(newRunCmd) }

type runOptions struct {
	url, branch, path string
	stateDir, out     string
	interval          time.Duration
	kubeconfig        string
	forceConflicts    bool
	demo              bool
	demoExample       string
}

func newRunCmd(g *Globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: poll the plan repository, promote services in waves, render",
		Long: `Run polls a Git repository of migration plans, decides each service's step
(windows, soak, gates, approvals), persists progress write-ahead in a local
state file and writes the rendered overlays per cluster to --out (the
rendered-manifests pattern that Argo CD and Flux apply). Applying to clusters happens with --kubeconfig: every cluster of the plans whose name
is a context of that kubeconfig gets server-side applies (field manager
"ferry"), an inventory and prunes, and promotions wait for ready endpoints.

With --demo and no --url, it creates a local Git repository from
examples/linkerd-eks under --state-dir on first run and uses demo timings:
a promotion tick every 10 s, 5 s soak, no Prometheus or webhook gates, whole
waves moving at once. Ctrl-C stops it; running it again resumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDaemon(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.url, "url", "", "plan repository URL (https, ssh, git or file); default with --demo: a local repository made from the example")
	f.StringVar(&o.branch, "branch", "main", "branch to follow")
	f.StringVar(&o.path, "path", "", "subdirectory of the repository holding the plans")
	f.StringVar(&o.stateDir, "state-dir", ".ferry/state", "directory of the progress store (state.db) and the git object cache")
	f.StringVar(&o.out, "out", "out/rendered", "directory the rendered overlays are written to, one subdirectory per cluster")
	f.DurationVar(&o.interval, "interval", 10*time.Second, "how often to poll the plan repository and reconcile")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "apply to the clusters whose contexts the plans name, from this kubeconfig; without it, render to --out")
	f.BoolVar(&o.forceConflicts, "force-conflicts", false, "take over fields another field manager owns (off: conflicts block the step)")
	f.BoolVar(&o.demo, "demo", false, "run the bundled example with demo timings")
	f.StringVar(&o.demoExample, "demo-example", "examples/linkerd-eks", "plan directory the demo repository is made from")
	return cmd
}

func runDaemon(ctx context.Context, g *Globals, o runOptions) error {
	if o.url == "" {
		if !o.demo {
			return withCode(ExitUsage, fmt.Errorf("--url is required (or --demo)"))
		}
		repoDir := filepath.Join(o.stateDir, "demo-plans")
		if err := ensureDemoRepo(repoDir, o.demoExample); err != nil {
			return withCode(ExitUsage, fmt.Errorf("demo repository: %w", err))
		}
		abs, err := filepath.Abs(repoDir)
		if err != nil {
			return withCode(ExitUsage, err)
		}
		o.url = "file://" + abs
		if o.interval > 2*time.Second {
			o.interval = 2 * time.Second
		}
	}
	src, err := source.New(source.Config{
		URL: o.url, Ref: source.Ref{Branch: o.branch}, Path: o.path,
		Interval: o.interval, Timeout: time.Minute,
	}, filepath.Join(o.stateDir, "source"), g.Logger)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	defer src.Close()
	store, err := state.NewBolt(o.stateDir, 5*time.Second)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	var target reconciler.Target = &reconciler.DirTarget{Dir: o.out}
	var ct *apply.Target
	if o.kubeconfig != "" {
		t, err := clusterTarget(o.kubeconfig, o.forceConflicts)
		if err != nil {
			return withCode(ExitUsage, err)
		}
		ct = t
		target = ct
		fmt.Fprintf(g.Stderr, "ferry: applying to the contexts of %s\n", o.kubeconfig)
	} else {
		fmt.Fprintf(g.Stderr, "ferry: writing rendered overlays to %s; readiness of backends cannot be checked in directory mode\n", o.out)
	}
	view := &progressView{w: g.Stdout}
	cfg := reconciler.Config{
		Source: src, Store: store,
		Target: target,
		Gates:  &gates.Evaluator{},
		Logger: g.Logger,
		OnReconcile: func(repo *plans.Repository, d map[string]plans.Plan) {
			view.show(repo, d)
		},
	}
	if o.demo {
		cfg.Tweak = demoTimings
	}
	if ct != nil {
		cfg.OnPlans = ct.Route
	}
	r := reconciler.New(cfg)
	if err := r.Run(ctx, o.interval); err != nil {
		return withCode(ExitUsage, err)
	}
	fmt.Fprintln(g.Stderr, "ferry: stopped; progress is saved in", store.Path())
	return nil
}

// clusterTarget makes an applier for every context of the kubeconfig; the
// target applies a cluster's render when the plan's cluster name is a
// context name.
func clusterTarget(path string, force bool) (*apply.Target, error) {
	kc, err := loadKubeconfig(path)
	if err != nil {
		return nil, err
	}
	appliers := map[string]*apply.Applier{}
	for name := range kc.cfg.Contexts {
		cfg, err := kc.rest(name)
		if err != nil {
			return nil, err
		}
		a, err := apply.New(cfg, name, apply.Options{ForceConflicts: force})
		if err != nil {
			return nil, fmt.Errorf("context %s: %w", name, err)
		}
		appliers[name] = a
	}
	return apply.NewTarget(appliers), nil
}

// demoTimings shortens a plan so that a newcomer sees a wave finish in
// about a minute: ticks every 10 s, 5 s soak, whole waves at once, and only
// gates that need no outside system.
func demoTimings(repo *plans.Repository) {
	for _, m := range repo.Migrations {
		m.Window.Schedules = []string{"@every 10s"}
		m.Window.Deny = nil
		m.Soak = 5 * time.Second
		keep := func(gs []plans.Gate) []plans.Gate {
			var out []plans.Gate
			for _, g := range gs {
				if g.Kind == plans.GateApproval || g.Kind == plans.GateSoak {
					if g.Kind == plans.GateSoak {
						g.Soak = 5 * time.Second
					}
					out = append(out, g)
				}
			}
			return out
		}
		m.Gates = keep(m.Gates)
		for _, w := range m.Waves {
			w.Gates = keep(w.Gates)
			w.MaxConcurrent = len(w.Services)
		}
	}
}

// ensureDemoRepo makes a Git repository with one commit of the example's
// files, once.
func ensureDemoRepo(dir, example string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := filepath.WalkDir(example, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(example, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return err
	}
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	if err := wt.AddGlob("."); err != nil {
		return err
	}
	_, err = wt.Commit("demo plans from "+example, &git.CommitOptions{
		Author: &object.Signature{Name: "ferry demo", Email: "demo@ferry.invalid", When: time.Now()},
	})
	return err
}

// progressView prints a line per service whenever a step or state changes.
type progressView struct {
	w    io.Writer
	last string
}

func (v *progressView) show(repo *plans.Repository, d map[string]plans.Plan) {
	var b strings.Builder
	names := make([]string, 0, len(d))
	for n := range d {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		m := repo.Migration(name)
		plan := d[name]
		fmt.Fprintf(&b, "migration %s (%s -> %s, %s)\n", m.Name, m.From, m.To, m.Provider)
		for _, w := range m.Waves {
			fmt.Fprintf(&b, "  wave %s\n", w.Name)
			for _, s := range w.Services {
				dec := plan.Decision(s.Ref())
				if dec == nil {
					continue
				}
				weight := m.Steps[min(dec.Progress.Step, len(m.Steps)-1)].Weight
				bar := strings.Repeat("#", weight/5) + strings.Repeat(".", 20-weight/5)
				why := dec.Blocked
				if why == "" && !dec.NotBefore.IsZero() {
					why = "next tick " + dec.NotBefore.Format("15:04:05")
				}
				fmt.Fprintf(&b, "    %-24s [%s] %3d%%  %-12s %s\n", s.Ref(), bar, weight, dec.Progress.State, why)
			}
		}
	}
	out := b.String()
	if out == v.last {
		return
	}
	v.last = out
	fmt.Fprintf(v.w, "--- %s\n%s", time.Now().Format("15:04:05"), out)
}
