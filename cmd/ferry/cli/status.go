package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

func init() { register(newStatusCmd) }

// clock is where the commands read the time; tests stop it.
var clock = time.Now

// stateFlags are the flags of the commands that read plans and state.
type stateFlags struct {
	plans    string
	stateDir string
	// The kube store, for a daemon running in a cluster (--store kube).
	kind        string
	kubeconfig  string
	homeContext string
	namespace   string
}

func (f *stateFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.plans, "plans", ".", "plan repository directory")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", filepath.Join(".ferry", "state"), "state directory (the daemon's bolt store)")
	cmd.Flags().StringVar(&f.kind, "store", "bolt", "the daemon's progress store: bolt (--state-dir) or kube (ConfigMaps in --namespace of --home-context)")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the home cluster, for --store kube (default: $KUBECONFIG, ~/.kube/config)")
	cmd.Flags().StringVar(&f.homeContext, "home-context", "", "context of the home cluster, for --store kube (default: the current context)")
	cmd.Flags().StringVar(&f.namespace, "namespace", "ferry-system", "namespace of the kube store")
}

// kube opens the kube store of the home cluster.
func (f *stateFlags) kube() (state.Store, error) {
	kc, err := loadKubeconfig(f.kubeconfig)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	cx := f.homeContext
	if cx == "" {
		cx = kc.cfg.CurrentContext
	}
	cfg, err := kc.rest(cx)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return state.NewKube(client, f.namespace), nil
}

// repo loads the plan repository; invalid plans exit 1, anything else 2.
func (f *stateFlags) repo() (*plans.Repository, error) {
	repo, err := loadDir(f.plans)
	var verrs plans.Errors
	if errors.As(err, &verrs) {
		return nil, withCode(ExitInvalid, fmt.Errorf("plans in %s are invalid (run ferry validate %s): %w", f.plans, f.plans, err))
	}
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return repo, nil
}

// store opens the state store for writing, creating it if needed.
func (f *stateFlags) store() (state.Store, error) {
	switch f.kind {
	case "kube":
		return f.kube()
	case "bolt", "":
	default:
		return nil, withCode(ExitUsage, fmt.Errorf("--store %q: expected bolt or kube", f.kind))
	}
	st, err := state.NewBolt(f.stateDir, 0)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return st, nil
}

// readStore opens the state store for reading; nil when there is none yet,
// so that reading commands never create one.
func (f *stateFlags) readStore() (state.Store, error) {
	if f.kind == "bolt" || f.kind == "" {
		if _, err := os.Stat(filepath.Join(f.stateDir, state.BoltFile)); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return f.store()
}

// target is a parsed MIGRATION[/WAVE|/NAMESPACE/NAME] argument.
type target struct {
	m       *plans.Migration
	wave    string
	service string
}

// services returns the services of the plan the target covers.
func (t target) services() []*plans.Service {
	switch {
	case t.service != "":
		return []*plans.Service{t.m.Service(t.service)}
	case t.wave != "":
		return t.m.Wave(t.wave).Services
	}
	return t.m.Services()
}

// parseTarget resolves arg against the plan. An unknown migration, wave or
// service exits 1 with the valid names.
func parseTarget(repo *plans.Repository, arg string) (target, error) {
	parts := strings.Split(arg, "/")
	m := repo.Migration(parts[0])
	if m == nil {
		return target{}, withCode(ExitInvalid, fmt.Errorf("no migration %q; migrations are: %s", parts[0], strings.Join(migrationNames(repo), ", ")))
	}
	t := target{m: m}
	switch len(parts) {
	case 1:
	case 2:
		if m.Wave(parts[1]) == nil {
			return target{}, withCode(ExitInvalid, fmt.Errorf("migration %s has no wave %q; waves are: %s (name a service as %s/NAMESPACE/NAME)",
				m.Name, parts[1], strings.Join(waveNames(m), ", "), m.Name))
		}
		t.wave = parts[1]
	case 3:
		ref := parts[1] + "/" + parts[2]
		if m.Service(ref) == nil {
			return target{}, withCode(ExitInvalid, fmt.Errorf("migration %s has no service %q; services are: %s",
				m.Name, ref, strings.Join(serviceRefs(m), ", ")))
		}
		t.service = ref
	default:
		return target{}, withCode(ExitUsage, fmt.Errorf("%q: expected MIGRATION, MIGRATION/WAVE or MIGRATION/NAMESPACE/NAME", arg))
	}
	return t, nil
}

func migrationNames(repo *plans.Repository) []string {
	var out []string
	for _, m := range repo.Migrations {
		out = append(out, m.Name)
	}
	return out
}

func waveNames(m *plans.Migration) []string {
	var out []string
	for _, w := range m.Waves {
		out = append(out, w.Name)
	}
	return out
}

func serviceRefs(m *plans.Migration) []string {
	var out []string
	for _, s := range m.Services() {
		out = append(out, s.Ref())
	}
	return out
}

// migrations returns the migration args names, or every migration.
func migrations(repo *plans.Repository, args []string) ([]*plans.Migration, error) {
	if len(args) == 0 {
		return repo.Migrations, nil
	}
	t, err := parseTarget(repo, args[0])
	if err != nil {
		return nil, err
	}
	if t.wave != "" || t.service != "" {
		return nil, withCode(ExitUsage, fmt.Errorf("%q: expected a migration name", args[0]))
	}
	return []*plans.Migration{t.m}, nil
}

// MigrationStatus is where every service of one migration stands.
type MigrationStatus struct {
	Migration string       `json:"migration"`
	From      string       `json:"from"`
	To        string       `json:"to"`
	At        time.Time    `json:"at"`
	Steps     []int        `json:"steps"`
	Waves     []WaveStatus `json:"waves"`
	// Commit is the plan revision the daemon last saved progress at.
	Commit  string    `json:"commit,omitempty"`
	SavedAt time.Time `json:"savedAt,omitzero"`
}

// WaveStatus is where the services of one wave stand.
type WaveStatus struct {
	Wave     string          `json:"wave"`
	Services []ServiceStatus `json:"services"`
}

// summary says how far the wave got, as ": 2 of 5 complete, 1 moving".
func (w WaveStatus) summary() string {
	var complete, moving int
	for _, s := range w.Services {
		switch {
		case s.State == plans.StateComplete:
			complete++
		case s.Step > 0:
			moving++
		}
	}
	out := fmt.Sprintf(": %d of %d complete", complete, len(w.Services))
	if moving > 0 {
		out += fmt.Sprintf(", %d under way", moving)
	}
	return out
}

// ServiceStatus is where one service stands and what holds it.
type ServiceStatus struct {
	Service string      `json:"service"`
	Step    int         `json:"step"`
	Weight  int         `json:"weight"`
	State   plans.State `json:"state"`
	// Since is when the service reached its step; zero before it was
	// first recorded.
	Since time.Time `json:"since,omitzero"`
	// Next is the earliest time the service can move if its gates pass;
	// zero when something other than time holds it.
	Next time.Time `json:"next,omitzero"`
	// Blocked says in words what holds the service.
	Blocked string `json:"blocked,omitempty"`
	// Requests are operator requests the daemon has not applied yet.
	Requests []string `json:"requests,omitempty"`
}

func newStatusCmd(g *Globals) *cobra.Command {
	var (
		f      stateFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "status [MIGRATION[/WAVE|/NAMESPACE/NAME]]",
		Short: "Show where every service of a migration stands and what holds it",
		Long: `Status shows, per wave and service, the step and weight a service is at,
its state, since when, the earliest time it can move next if its gates pass,
and what holds it, with the operator requests the daemon has not applied yet.

It reads the plans and the daemon's state and decides as the daemon would,
without running gates and without writing anything.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" && output != "yaml" {
				return withCode(ExitUsage, fmt.Errorf("--output %q: expected table, json or yaml", output))
			}
			repo, err := f.repo()
			if err != nil {
				return err
			}
			var ts []target
			if len(args) == 0 {
				for _, m := range repo.Migrations {
					ts = append(ts, target{m: m})
				}
			} else {
				t, err := parseTarget(repo, args[0])
				if err != nil {
					return err
				}
				ts = append(ts, t)
			}
			st, err := f.readStore()
			if err != nil {
				return err
			}
			now := clock()
			var out []MigrationStatus
			for _, t := range ts {
				s, err := migrationStatus(cmd.Context(), st, t.m, now)
				if err != nil {
					return withCode(ExitUsage, err)
				}
				out = append(out, narrow(s, t))
			}
			if d, ok := readDaemonInfo(f.stateDir); ok && output == "table" {
				fmt.Fprintf(g.Stdout, "DAEMON pid %d since %s, target %s %s\n", d.PID, stamp(d.Started, now), d.Target, d.Out)
				if !d.Readiness {
					fmt.Fprintln(g.Stdout, "note: in directory mode ferry cannot see the clusters: readiness of backends is not checked before traffic moves")
				}
				if d.ApplyError != "" {
					fmt.Fprintf(g.Stdout, "last apply failed (%s), so moves in flight stay pending: %s\n", stamp(d.ApplyAt, now), d.ApplyError)
				}
				fmt.Fprintln(g.Stdout)
			}
			return withUsage(writeStatus(g.Stdout, output, out))
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// narrow keeps the wave or service t names.
func narrow(s MigrationStatus, t target) MigrationStatus {
	if t.wave == "" && t.service == "" {
		return s
	}
	var waves []WaveStatus
	for _, w := range s.Waves {
		if t.wave != "" && w.Wave != t.wave {
			continue
		}
		if t.service != "" {
			w.Services = slices.DeleteFunc(w.Services, func(ss ServiceStatus) bool { return ss.Service != t.service })
			if len(w.Services) == 0 {
				continue
			}
		}
		waves = append(waves, w)
	}
	s.Waves = waves
	return s
}

// withUsage gives an output error the usage exit code.
func withUsage(err error) error {
	if err == nil {
		return nil
	}
	return withCode(ExitUsage, err)
}

// load returns the migration's progress and pending requests; none when
// st is nil.
func load(ctx context.Context, st state.Store, migration string) (state.Snapshot, []plans.Request, error) {
	if st == nil {
		return state.Snapshot{Migration: migration, Services: map[string]plans.Progress{}}, nil, nil
	}
	snap, err := st.Load(ctx, migration)
	if err != nil {
		return snap, nil, err
	}
	reqs, err := st.Pending(ctx, migration)
	return snap, reqs, err
}

func migrationStatus(ctx context.Context, st state.Store, m *plans.Migration, now time.Time) (MigrationStatus, error) {
	snap, reqs, err := load(ctx, st, m.Name)
	if err != nil {
		return MigrationStatus{}, err
	}
	out := MigrationStatus{Migration: m.Name, From: m.From, To: m.To, At: now, Commit: snap.Commit, SavedAt: snap.SavedAt}
	for _, s := range m.Steps {
		out.Steps = append(out.Steps, s.Weight)
	}
	// Nothing is evaluated here: decide as if every gate passed and every
	// backend were ready, so that the decision says what else holds a
	// service (time, order, approvals, pauses) and when time alone lets it
	// move. What the gates said is what the daemon recorded.
	plan := plans.Decide(now, m, snap.Services, optimistic(m, now))
	requested := map[string][]string{}
	for _, r := range reqs {
		t := target{m: m, wave: r.Wave, service: r.Service}
		if r.Service != "" && m.Service(r.Service) == nil || r.Wave != "" && m.Wave(r.Wave) == nil {
			continue
		}
		for _, s := range t.services() {
			requested[s.Ref()] = append(requested[s.Ref()], requestWords(r))
		}
	}
	for _, w := range m.Waves {
		ws := WaveStatus{Wave: w.Name}
		for _, s := range w.Services {
			ref := s.Ref()
			d := plan.Decision(ref)
			if d == nil {
				continue
			}
			recorded, known := snap.Services[ref]
			ss := ServiceStatus{
				Service:  ref,
				Step:     d.Progress.Step,
				Weight:   d.Progress.Weight,
				State:    d.Progress.State,
				Blocked:  d.Blocked,
				Requests: requested[ref],
			}
			if known {
				ss.Since = recorded.Since
			}
			switch {
			case d.Action == plans.ActionPromote || d.Action == plans.ActionComplete:
				ss.Next = now
				ss.State, ss.Blocked = dueWords(d, recorded, known)
			case !d.NotBefore.IsZero():
				ss.Next = d.NotBefore
				// Time holds it, but so may the gates the daemon saw fail.
				if known && recorded.State == plans.StateHolding && strings.HasPrefix(recorded.Blocked, "gate ") {
					ss.State, ss.Blocked = plans.StateHolding, recorded.Blocked+"; "+d.Blocked
				}
			}
			ws.Services = append(ws.Services, ss)
		}
		out.Waves = append(out.Waves, ws)
	}
	// Services in progress but gone from the plan: the daemon retires them.
	gone := WaveStatus{Wave: removedWave}
	for _, d := range plan.Decisions {
		if d.Wave == "" {
			gone.Services = append(gone.Services, ServiceStatus{Service: d.Service, Step: d.Progress.Step,
				Weight: d.Progress.Weight, State: d.Progress.State, Since: d.Progress.Since, Blocked: d.Blocked})
		}
	}
	if len(gone.Services) > 0 {
		out.Waves = append(out.Waves, gone)
	}
	return out, nil
}

// removedWave is the wave status lists services removed from the plan in.
const removedWave = "(removed from the plan)"

// optimistic returns observations in which every gate of m passes at now
// and every backend is ready.
func optimistic(m *plans.Migration, now time.Time) plans.Observations {
	obs := plans.Observations{Gates: map[string][]plans.GateResult{}, Readiness: map[string]plans.Readiness{}}
	for _, w := range m.Waves {
		for _, s := range w.Services {
			for _, g := range slices.Concat(m.Gates, w.Gates) {
				if g.Kind == plans.GatePrometheus || g.Kind == plans.GateWebhook {
					obs.Gates[s.Ref()] = append(obs.Gates[s.Ref()], plans.GateResult{Gate: g.Name, Verdict: plans.Pass, At: now})
				}
			}
			obs.Readiness[s.Ref()] = plans.Readiness{Ready: true}
		}
	}
	return obs
}

// dueWords returns the state and reason of a service that moves as soon
// as its gates pass: what the daemon recorded when it evaluated them, or
// that they are due.
func dueWords(d *plans.Decision, recorded plans.Progress, known bool) (plans.State, string) {
	st := plans.StatePending
	if d.Progress.Step > 0 {
		st = plans.StateProgressing
	}
	if known && recorded.State != "" {
		st = recorded.State
	}
	if known && recorded.Blocked != "" {
		return st, recorded.Blocked
	}
	if len(d.Gates) == 0 {
		return st, "due"
	}
	var names []string
	for _, g := range d.Gates {
		names = append(names, g.Name)
	}
	return st, "due: gates " + strings.Join(names, ", ") + " to pass"
}

// requestWords says a pending request, as "requested: pause by maria".
func requestWords(r plans.Request) string {
	s := fmt.Sprintf("requested: %s", r.Kind)
	if r.Kind == plans.RequestApprove && r.Step != 0 {
		s += fmt.Sprintf(" of step %d", r.Step)
	}
	s += " by " + r.By
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	return s
}

func writeStatus(w io.Writer, output string, ms []MigrationStatus) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	case "yaml":
		b, err := yaml.Marshal(ms)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	for i, m := range ms {
		if i > 0 {
			fmt.Fprintln(w)
		}
		steps := make([]string, len(m.Steps))
		for j, s := range m.Steps {
			steps[j] = fmt.Sprint(s)
		}
		fmt.Fprintf(w, "MIGRATION %s: %s -> %s, steps %s\n", m.Migration, m.From, m.To, strings.Join(steps, " "))
		if m.Commit != "" || !m.SavedAt.IsZero() {
			fmt.Fprintf(w, "last saved %s at commit %s\n", stamp(m.SavedAt, m.At), orDash(m.Commit))
		}
		for _, ws := range m.Waves {
			fmt.Fprintf(w, "\nWAVE %s%s\n", ws.Wave, ws.summary())
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tSTEP\tWEIGHT\tSTATE\tSINCE\tNEXT\tREASON")
			for _, s := range ws.Services {
				reason := s.Blocked
				if len(s.Requests) > 0 {
					reason = strings.Join(append(slices.Clone(s.Requests), reason), "; ")
					reason = strings.TrimSuffix(reason, "; ")
				}
				fmt.Fprintf(tw, "%s\t%d\t%d%%\t%s\t%s\t%s\t%s\n", s.Service, s.Step, s.Weight, s.State,
					stamp(s.Since, m.At), stamp(s.Next, m.At), orDash(reason))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// stamp formats t for a table: "now" when it is now, else a local time.
func stamp(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "-"
	case t.Equal(now):
		return "now"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
