package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/renderer"
)

func init() { register(newDiffCmd) }

func newDiffCmd(g *Globals) *cobra.Command {
	var (
		kubeconfig string
		contexts   []string
		stepFlags  []string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "diff [DIR]",
		Short: "Show how the live clusters differ from the render of a plan repository",
		Long: `Diff renders the plan repository in DIR (default ".") with every service at
step 0, or at the steps given with --step, and for each cluster whose context
is in the kubeconfig prints a unified diff between the live objects and the
result of a server-side dry-run apply of the render (field manager "ferry"),
and the objects of ferry's inventories an apply would prune (to /dev/null).
managedFields, resourceVersion, uid, creationTimestamp, generation and status
are left out. Nothing is written to any cluster.

--step migration/namespace/name=WEIGHT renders a service at that step (a
weight of its migration, as for ferry render); repeat it.
--context limits the diff to clusters with those contexts; repeat it.

Exit codes: 0 nothing differs, 1 something differs, 2 error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			repo, err := loadDir(dir)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			steps, err := parseStepFlags(repo, stepFlags, nil)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			res, err := renderer.Render(repo, steps)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			kc, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			differs, compared := false, 0
			for _, out := range res.Clusters {
				c := repo.Clusters[out.Name]
				if c == nil || c.Context == "" {
					continue
				}
				if len(contexts) > 0 && !slices.Contains(contexts, c.Context) {
					continue
				}
				if !kc.has(c.Context) {
					fmt.Fprintf(g.Stderr, "cluster %s: context %q not in the kubeconfig; skipped\n", out.Name, c.Context)
					continue
				}
				cfg, err := kc.rest(c.Context)
				if err != nil {
					return withCode(ExitUsage, fmt.Errorf("cluster %s: %w", out.Name, err))
				}
				a, err := apply.New(cfg, out.Name, apply.Options{Timeout: timeout})
				if err != nil {
					return withCode(ExitUsage, err)
				}
				diffs, err := a.Diff(ctx, out.Objects)
				if err != nil {
					return withCode(ExitUsage, err)
				}
				for _, m := range repo.Migrations {
					if m.From != out.Name && m.To != out.Name {
						continue
					}
					var objs []renderer.Object
					for _, o := range out.Objects {
						if o.Migration == m.Name {
							objs = append(objs, o)
						}
					}
					pruned, err := a.PruneDiff(ctx, m.Name, objs)
					if err != nil {
						return withCode(ExitUsage, err)
					}
					diffs = append(diffs, pruned...)
				}
				compared++
				for _, d := range diffs {
					text, err := unified(out.Name, d)
					if err != nil {
						return withCode(ExitUsage, err)
					}
					if text != "" {
						differs = true
						fmt.Fprint(g.Stdout, text)
					}
				}
			}
			if len(contexts) > 0 && compared == 0 {
				return withCode(ExitUsage, errors.New("no cluster of the plans has a context given with --context"))
			}
			if differs {
				return withCode(ExitInvalid, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "path of the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringArrayVar(&contexts, "context", nil, "diff only clusters with this kubeconfig context (repeatable)")
	cmd.Flags().StringArrayVar(&stepFlags, "step", nil, "migration/namespace/name=INDEX: render that service at step INDEX (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", apply.DefaultTimeout, "timeout of each API call")
	return cmd
}

// unified returns the unified diff of d's live and desired YAML, or "".
func unified(cluster string, d apply.Diff) (string, error) {
	if d.Skipped != "" {
		return "", nil
	}
	var live, desired []byte
	var err error
	if d.Live != nil {
		if live, err = yaml.Marshal(d.Live.Object); err != nil {
			return "", err
		}
	}
	if d.Desired != nil {
		if desired, err = yaml.Marshal(d.Desired.Object); err != nil {
			return "", err
		}
	}
	if string(live) == string(desired) {
		return "", nil
	}
	name := cluster + "/" + d.ID.String()
	from := "live/" + name
	if d.Live == nil {
		from = "/dev/null"
	}
	to := "dry-run/" + name
	if d.Desired == nil {
		to = "/dev/null"
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        lines(live),
		B:        lines(desired),
		FromFile: from,
		ToFile:   to,
		Context:  3,
	})
}

// lines splits b after each newline, without difflib.SplitLines's extra
// empty last line.
func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	l := strings.SplitAfter(string(b), "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	}
	return l
}
