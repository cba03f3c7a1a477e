package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/renderer"
)

func init() { register(newRenderCmd) }

func newRenderCmd(g *Globals) *cobra.Command {
	var (
		out       string
		stepFlags []string
		waveFlags []string
		cmp       baseOptions
	)
	cmd := &cobra.Command{
		Use:   "render [DIR]",
		Short: "Write per-cluster Kustomize overlays and built manifests, without touching a cluster",
		Long: `Render validates the plans of DIR (default ".") and writes, for every cluster,
OUT/<cluster>/kustomization.yaml with its resources and OUT/<cluster>/manifests.yaml,
the build of that overlay (byte-identical to "kubectl kustomize OUT/<cluster>").

Services are rendered at step 0 (exports in place, no traffic moved) unless
--step or --wave say otherwise; weights are given in percent and must be one of
the migration's steps:

  ferry render --step onprem-to-eks/shop/cart=50 --wave onprem-to-eks/backends=100

Exit codes: 0 rendered, 1 invalid plans, 2 usage or I/O error.

Pull requests: with --base REF, DIR must be inside a Git working copy.
Render then loads and renders the plans of DIR at REF and at --head REF
(default: the files in the working tree, what the author has, committed or
not) and, instead of writing OUT, prints per cluster a unified diff of the
built manifests and a summary: services added and removed, weights, steps,
gates, windows and flags (rollback, paused) that change, when the migration
and each wave would complete (assuming gates pass, as ferry plan timeline
projects it), and the objects that would be pruned. Refs are anything
"git rev-parse" takes: origin/main, a tag, a commit. Both sides are rendered
at the same assumed progress: every service at weight 0, unless --state-dir
names a state directory holding the daemon's state.db (its recorded
weights) or --step/--wave set weights (steps of the head's plans); a weight
maps to the highest step of each side not above it. --format markdown writes a pull-request comment with
a warning block for risky changes: prunes, moves larger than one step,
removed gates, rollbacks and pauses set in Git. Plans that are invalid or
missing at REF are compared as empty, with a note.

  ferry render plans/ --base origin/main --format markdown

Exit codes with --base: 0 valid and rendered, 1 plans invalid at head (the
errors are printed as ferry validate prints them) or a --fail-on-* policy
matched, 2 usage or infrastructure error (not a Git working copy, unknown
ref).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if cmp.base != "" {
				if cmd.Flags().Changed("out") {
					return withCode(ExitUsage, errors.New("--out: nothing is written with --base"))
				}
				cmp.dir, cmp.stepFlags, cmp.waveFlags = dir, stepFlags, waveFlags
				return runRenderBase(cmd.Context(), g, cmp)
			}
			if cmd.Flags().Changed("head") || cmd.Flags().Changed("format") || cmd.Flags().Changed("state-dir") ||
				cmp.failOnPrune || cmp.failOnRollback {
				return withCode(ExitUsage, errors.New("--head, --format, --state-dir and --fail-on-* need --base"))
			}
			repo, err := loadDir(dir)
			if err != nil {
				var verrs plans.Errors
				if errors.As(err, &verrs) {
					for _, e := range verrs {
						fmt.Fprintln(g.Stdout, e)
					}
					return withCode(ExitInvalid, fmt.Errorf("%d error(s) in %s", len(verrs), dir))
				}
				return withCode(ExitUsage, err)
			}
			steps, err := parseStepFlags(repo, stepFlags, waveFlags)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			res, err := renderer.Render(repo, steps)
			if err != nil {
				return withCode(ExitInvalid, fmt.Errorf("render %s: %w", dir, err))
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return withCode(ExitUsage, err)
			}
			if err := renderer.WriteDir(res, out); err != nil {
				return withCode(ExitUsage, err)
			}
			for _, c := range res.Clusters {
				fmt.Fprintf(g.Stdout, "%s/%s: %d objects\n", out, c.Name, len(c.Objects))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "out", "directory to write OUT/<cluster>/ into")
	cmd.Flags().StringArrayVar(&stepFlags, "step", nil, "render MIGRATION/NAMESPACE/NAME at WEIGHT percent (repeatable)")
	cmd.Flags().StringArrayVar(&waveFlags, "wave", nil, "render every service of MIGRATION/WAVE at WEIGHT percent (repeatable)")
	cmd.Flags().StringVar(&cmp.base, "base", "", "compare with the plans at this Git ref instead of writing OUT")
	cmd.Flags().StringVar(&cmp.head, "head", "", "with --base: the Git ref to compare (default: the working tree)")
	cmd.Flags().StringVar(&cmp.format, "format", "text", "with --base: text or markdown")
	cmd.Flags().StringVar(&cmp.stateDir, "state-dir", "", "with --base: assume the progress recorded in this state directory")
	cmd.Flags().BoolVar(&cmp.failOnPrune, "fail-on-prune", false, "with --base: exit 1 when objects would be pruned")
	cmd.Flags().BoolVar(&cmp.failOnRollback, "fail-on-rollback", false, "with --base: exit 1 when a rollback is set in Git")
	return cmd
}

// parseStepFlags turns --step and --wave flags into step indices. A weight
// must be one of the migration's steps, so a hypothetical render is always
// a state the engine could reach.
func parseStepFlags(repo *plans.Repository, stepFlags, waveFlags []string) (plans.Steps, error) {
	steps := plans.Steps{}
	parse := func(flag, s string) (*plans.Migration, string, int, error) {
		target, w, ok := strings.Cut(s, "=")
		if !ok {
			return nil, "", 0, fmt.Errorf("--%s %q: expected MIGRATION/...=WEIGHT", flag, s)
		}
		weight, err := strconv.Atoi(w)
		if err != nil {
			return nil, "", 0, fmt.Errorf("--%s %q: weight %q is not a number", flag, s, w)
		}
		mig, rest, _ := strings.Cut(target, "/")
		m := repo.Migration(mig)
		if m == nil {
			return nil, "", 0, fmt.Errorf("--%s %q: no migration %q", flag, s, mig)
		}
		idx := -1
		for i, st := range m.Steps {
			if st.Weight == weight && st.Mirror == 0 {
				idx = i
			}
		}
		if idx < 0 {
			var ws []string
			for _, st := range m.Steps {
				if st.Mirror == 0 {
					ws = append(ws, strconv.Itoa(st.Weight))
				}
			}
			return nil, "", 0, fmt.Errorf("--%s %q: %d is not a step of %s; expected one of %s", flag, s, weight, mig, strings.Join(ws, ", "))
		}
		return m, rest, idx, nil
	}
	for _, s := range waveFlags {
		m, wave, idx, err := parse("wave", s)
		if err != nil {
			return nil, err
		}
		w := m.Wave(wave)
		if w == nil {
			return nil, fmt.Errorf("--wave %q: no wave %q in migration %s", s, wave, m.Name)
		}
		for _, svc := range w.Services {
			steps[plans.ServiceID{Migration: m.Name, Service: svc.Ref()}] = idx
		}
	}
	for _, s := range stepFlags {
		m, ref, idx, err := parse("step", s)
		if err != nil {
			return nil, err
		}
		if m.Service(ref) == nil {
			return nil, fmt.Errorf("--step %q: no service %q in migration %s", s, ref, m.Name)
		}
		steps[plans.ServiceID{Migration: m.Name, Service: ref}] = idx
	}
	return steps, nil
}
