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

Exit codes: 0 rendered, 1 invalid plans, 2 usage or I/O error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
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
