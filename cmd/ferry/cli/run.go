package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/reconciler/events"
	"github.com/ferry-dev/ferry/reconciler/gates"
	"github.com/ferry-dev/ferry/reconciler/leader"
	"github.com/ferry-dev/ferry/reconciler/metrics"
	"github.com/ferry-dev/ferry/reconciler/publish"
	"github.com/ferry-dev/ferry/reconciler/source"
	"github.com/ferry-dev/ferry/reconciler/state"
)

func init() { register(newRunCmd) }

type runOptions struct {
	config            string
	url, branch, path string
	gitUser           string
	gitSSHKey         string
	gitKnownHosts     string
	stateDir, out     string
	interval          time.Duration
	kubeconfig        string
	outGitURL         string
	outGitBranch      string
	forceConflicts    bool
	httpAddr          string
	logFormat         string
	store             string
	namespace         string
	homeContext       string
	leaderElect       bool
	events            bool
	drain             time.Duration
	memoryLimit       string
	demo              bool
	demoExample       string
}

// Environment variables holding secrets: never flags or the config file.
const (
	envGitToken      = "FERRY_GIT_TOKEN"
	envWebhookSecret = "FERRY_WEBHOOK_SECRET"
)

func newRunCmd(g *Globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: poll the plan repository, promote services in waves, render",
		Long: `Run polls a Git repository of migration plans, decides each service's step
(windows, soak, gates, approvals), persists progress write-ahead and writes
the rendered overlays per cluster to --out (the rendered-manifests pattern
that Argo CD and Flux apply). With --kubeconfig it applies to clusters
instead: every cluster of the plans whose context is in that kubeconfig gets
server-side applies (field manager "ferry"), an inventory and prunes, a
preflight before a migration's first step, and promotions wait for ready
endpoints. In directory mode readiness cannot be checked; ferry says so.

Settings come from flags and from a YAML file (--config) whose keys are the
flags' names, e.g. "state-dir: /var/lib/ferry"; a flag on the command line
wins. Secrets come only from the environment: ` + envGitToken + ` (HTTPS
password or token for the plan repository) and ` + envWebhookSecret + `
(the secret GitHub or GitLab sign push webhooks with; POST them to /hook).

With --http-addr it serves /metrics (Prometheus), /healthz, /readyz and
/hook. With --leader-elect, replicas campaign for a Lease in --namespace of
the home cluster (in-cluster config, or --home-context); only the leader
reconciles, and it stops writing before its lease can be taken over.

SIGINT or SIGTERM stops it after the in-flight reconcile (abandoned after
--drain); progress is saved write-ahead, so a rerun resumes. A second signal
exits at once.

With --demo and no --url, it creates a local Git repository from
examples/linkerd-eks under --state-dir on first run and uses demo timings:
a promotion tick every 10 s, 5 s soak, no Prometheus or webhook gates, whole
waves moving at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.config != "" {
				if err := applyConfigFile(cmd.Flags(), o.config); err != nil {
					return withCode(ExitUsage, err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // restore default handling: a second signal ends the process at once
			}()
			return runDaemon(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "YAML file of settings, keyed by these flags' names")
	f.StringVar(&o.url, "url", "", "plan repository URL (https, ssh, git or file); default with --demo: a local repository made from the example")
	f.StringVar(&o.branch, "branch", "main", "branch to follow")
	f.StringVar(&o.path, "path", "", "subdirectory of the repository holding the plans")
	f.StringVar(&o.gitUser, "git-username", "", "HTTPS user (with "+envGitToken+") or SSH user")
	f.StringVar(&o.gitSSHKey, "git-ssh-key-file", "", "private key file for SSH URLs")
	f.StringVar(&o.gitKnownHosts, "git-known-hosts", "", "known_hosts file for SSH URLs (required for SSH)")
	f.StringVar(&o.stateDir, "state-dir", ".ferry/state", "directory of the progress store (state.db) and the git object cache")
	f.StringVar(&o.out, "out", "out/rendered", "directory the rendered overlays are written to, one subdirectory per cluster")
	f.DurationVar(&o.interval, "interval", 10*time.Second, "how often to poll the plan repository and reconcile")
	f.StringVar(&o.outGitURL, "out-git-url", "", "also commit the rendered overlays in --out to a branch of this repository and push them (HTTPS with "+envGitToken+")")
	f.StringVar(&o.outGitBranch, "out-git-branch", "rendered", "branch --out-git-url pushes to")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "apply to the clusters whose contexts the plans name, from this kubeconfig; without it, render to --out")
	f.BoolVar(&o.forceConflicts, "force-conflicts", false, "take over fields another field manager owns (off: conflicts block the step)")
	f.StringVar(&o.httpAddr, "http-addr", "localhost:9797", "address of /metrics, /healthz, /readyz and /hook; empty: no HTTP server")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.store, "store", "bolt", "progress store: bolt (a file in --state-dir) or kube (ConfigMaps in --namespace of the home cluster, for several replicas)")
	f.StringVar(&o.namespace, "namespace", "ferry-system", "namespace of the home cluster for the kube store, the leader Lease and Events")
	f.StringVar(&o.homeContext, "home-context", "", "kubeconfig context of the home cluster; default: the in-cluster config when running in a pod")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "campaign for a Lease so that only one replica reconciles")
	f.BoolVar(&o.events, "events", false, "post Kubernetes Events for promotions, holds and rollbacks in the home cluster (on by default with a home cluster)")
	f.DurationVar(&o.drain, "drain", 30*time.Second, "on SIGINT/SIGTERM, how long the in-flight reconcile may go on before it is abandoned")
	f.StringVar(&o.memoryLimit, "memory-limit", "80MiB", "soft memory limit of the Go runtime (as GOMEMLIMIT, which wins when set): loading a large plan collects garbage sooner instead of growing the resident set; 0 for none")
	f.BoolVar(&o.demo, "demo", false, "run the bundled example with demo timings")
	f.StringVar(&o.demoExample, "demo-example", "examples/linkerd-eks", "plan directory the demo repository is made from")
	return cmd
}

func runDaemon(ctx context.Context, g *Globals, o runOptions) error {
	if err := setMemoryLimit(o.memoryLimit); err != nil {
		return withCode(ExitUsage, err)
	}
	switch o.logFormat {
	case "text":
	case "json":
		g.Logger = slog.New(slog.NewJSONHandler(g.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	default:
		return withCode(ExitUsage, fmt.Errorf("--log-format %q: expected text or json", o.logFormat))
	}
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
	auth := source.Auth{Username: o.gitUser, KnownHostsFile: o.gitKnownHosts}
	if _, ok := os.LookupEnv(envGitToken); ok {
		auth.Password = source.Secret{Env: envGitToken}
	}
	if o.gitSSHKey != "" {
		auth.SSHKey = source.Secret{File: o.gitSSHKey}
	}
	src, err := source.New(source.Config{
		URL: o.url, Ref: source.Ref{Branch: o.branch}, Path: o.path, Auth: auth,
		Interval: o.interval, Timeout: time.Minute,
	}, filepath.Join(o.stateDir, "source"), g.Logger)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	defer src.Close()

	home, err := homeClient(o)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	if home == nil && (o.store == "kube" || o.leaderElect || o.events) {
		return withCode(ExitUsage, errors.New("--store kube, --leader-elect and --events need a home cluster: run in a pod or set --home-context"))
	}
	var store reconciler.Store
	where := ""
	switch o.store {
	case "bolt":
		b, err := state.NewBolt(o.stateDir, 5*time.Second)
		if err != nil {
			return withCode(ExitUsage, err)
		}
		store, where = b, b.Path()
	case "kube":
		store, where = state.NewKube(home, o.namespace), "ConfigMaps in namespace "+o.namespace
	default:
		return withCode(ExitUsage, fmt.Errorf("--store %q: expected bolt or kube", o.store))
	}

	var target reconciler.Target = &reconciler.DirTarget{Dir: o.out}
	var ct *apply.Target
	mode := daemonInfo{PID: os.Getpid(), Started: time.Now(), Target: "directory", Out: o.out}
	if o.kubeconfig != "" && o.outGitURL != "" {
		return withCode(ExitUsage, errors.New("--out-git-url is for directory mode; it cannot be combined with --kubeconfig"))
	}
	if o.kubeconfig != "" {
		t, err := clusterTarget(o.kubeconfig, o.forceConflicts)
		if err != nil {
			return withCode(ExitUsage, err)
		}
		ct = t
		target = ct
		mode.Target, mode.Out, mode.Readiness = "clusters", o.kubeconfig, true
		fmt.Fprintf(g.Stderr, "ferry: applying to the contexts of %s\n", o.kubeconfig)
	} else {
		if o.outGitURL != "" {
			var auth transport.AuthMethod
			if tok, ok := os.LookupEnv(envGitToken); ok {
				auth = &githttp.BasicAuth{Username: cmp.Or(o.gitUser, "git"), Password: tok}
			}
			p, err := publish.New(ctx, o.outGitURL, o.outGitBranch, o.out, auth)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			target = p
			mode.Target = "git " + o.outGitURL + " branch " + o.outGitBranch
		}
		fmt.Fprintf(g.Stderr, "ferry: writing rendered overlays to %s; readiness of backends cannot be checked in directory mode\n", o.out)
	}
	if err := writeDaemonInfo(o.stateDir, mode); err != nil {
		return withCode(ExitUsage, err)
	}

	m := metrics.New()
	var drift driftRecorder
	ev := &gates.Evaluator{Timed: m.GateEvaluated}
	view := &progressView{w: g.Stdout}
	cfg := reconciler.Config{
		Source: src, Store: store, Target: target, Gates: ev,
		Logger: g.Logger, Metrics: m, Drain: o.drain,
		OnPlans: func(repo *plans.Repository) {
			ev.Clusters = repo.Clusters
			if ct != nil {
				ct.Route(repo)
			}
		},
		OnReconcile: func(repo *plans.Repository, d map[string]plans.Plan) {
			view.show(repo, d)
		},
		OnApply: func(err error) {
			if ct != nil {
				reportChanges(context.Background(), ct.LastChanges(), m, drift, g.Logger)
			}
			// ferry status tells why moves stay pending.
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if msg != mode.ApplyError {
				mode.ApplyError, mode.ApplyAt = msg, time.Now()
				if werr := writeDaemonInfo(o.stateDir, mode); werr != nil {
					g.Logger.Warn("write daemon status", "error", werr)
				}
			}
		},
	}
	if o.demo {
		cfg.Tweak = demoTimings
	}
	var elector *leader.Elector
	if o.leaderElect {
		elector, err = leader.New(leader.Config{Client: home, Namespace: o.namespace, Logger: g.Logger, OnChange: m.Leader})
		if err != nil {
			return withCode(ExitUsage, err)
		}
		cfg.Fence = elector.Leading
		// A replica that lost its lease must stop at once, not drain.
		cfg.Drain = 0
	} else {
		m.Leader(true)
	}
	if home != nil {
		identity := leader.NewIdentity()
		if elector != nil {
			identity = elector.Identity()
		}
		rec := events.New(home, o.namespace, identity, g.Logger)
		drift = rec
		cfg.OnEvents = func(ctx context.Context, migration string, evs []state.Event) {
			if err := rec.Record(ctx, migration, evs); err != nil {
				g.Logger.Warn("kubernetes events", "migration", migration, "error", err)
			}
		}
	}
	r := reconciler.New(cfg)

	if o.httpAddr != "" {
		secret := []byte(os.Getenv(envWebhookSecret))
		addr, err := serveHTTP(ctx, o.httpAddr, httpDeps{r: r, m: m, secret: secret, leading: cfg.Fence, interval: o.interval, log: g.Logger})
		if err != nil {
			return withCode(ExitUsage, err)
		}
		fmt.Fprintf(g.Stderr, "ferry: serving /metrics, /healthz, /readyz and /hook on http://%s\n", addr)
	}
	if elector != nil {
		err = elector.Run(ctx, func(ctx context.Context) { _ = r.Run(ctx, o.interval) })
	} else {
		err = r.Run(ctx, o.interval)
	}
	if err != nil {
		return withCode(ExitUsage, err)
	}
	fmt.Fprintln(g.Stderr, "ferry: stopped; progress is saved in", where)
	return nil
}

// setMemoryLimit applies --memory-limit unless GOMEMLIMIT is set. The
// peak of a daemon is loading a new commit (CUE evaluation makes garbage
// fast); a soft limit makes the collector keep up there, at some CPU, and
// costs nothing in the steady state, where the heap stays well below it.
func setMemoryLimit(limit string) error {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || limit == "0" || limit == "" {
		return nil
	}
	q, err := resource.ParseQuantity(strings.TrimSuffix(limit, "B"))
	if err != nil {
		return fmt.Errorf("--memory-limit %q: expected a size such as 80MiB: %v", limit, err)
	}
	debug.SetMemoryLimit(q.Value())
	return nil
}

// homeClient returns a client of the cluster ferry keeps its own objects
// in (kube store, Lease, Events): --home-context, else the in-cluster
// config when running in a pod, else nil.
func homeClient(o runOptions) (kubernetes.Interface, error) {
	var cfg *rest.Config
	switch {
	case o.homeContext != "":
		kc, err := loadKubeconfig(o.kubeconfig)
		if err != nil {
			return nil, err
		}
		if cfg, err = kc.rest(o.homeContext); err != nil {
			return nil, err
		}
	default:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, nil // not in a pod: no home cluster
		}
		cfg = c
	}
	return kubernetes.NewForConfig(cfg)
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
