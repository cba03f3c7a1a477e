package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/preflight"
	"github.com/ferry-dev/ferry/renderer"
)

func init() { register(newPreflightCmd) }

func newPreflightCmd(g *Globals) *cobra.Command {
	var (
		kubeconfig string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "preflight [DIR]",
		Short: "Check every cluster of the plans can take what ferry will do there",
		Long: `Preflight checks, for every cluster of the plans in DIR whose context is in
the kubeconfig: the API server is reachable, the credentials are valid, RBAC
allows every verb ferry needs on every kind it renders there
(SelfSubjectAccessReview), the providers' CRDs serve the versions ferry
renders, the plan's namespaces exist and, for Linkerd, the multicluster Link
to the peer cluster is present. It changes nothing.

Exit codes: 0 every check passed, 1 a check failed, 2 usage or load error.`,
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
					return withCode(ExitInvalid, err)
				}
				return withCode(ExitUsage, err)
			}
			res, err := renderer.Render(repo, plans.Steps{})
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
			var all []preflight.Result
			for _, out := range res.Clusters {
				c := repo.Clusters[out.Name]
				if c == nil || c.Context == "" {
					continue
				}
				if !kc.has(c.Context) {
					all = append(all, preflight.Result{Cluster: out.Name, Check: "kubeconfig", Reason: fmt.Sprintf("context %q is not in the kubeconfig; add it or fix clusters.%s.context", c.Context, out.Name)})
					continue
				}
				cfg, err := kc.rest(c.Context)
				if err != nil {
					all = append(all, preflight.Result{Cluster: out.Name, Check: "kubeconfig", Reason: err.Error()})
					continue
				}
				all = append(all, preflight.Check(ctx, cfg, repo, out, timeout)...)
			}
			tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLUSTER\tCHECK\tRESULT\tREASON")
			for _, r := range all {
				ok := "ok"
				if !r.OK {
					ok = "FAIL"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Cluster, r.Check, ok, r.Reason)
			}
			tw.Flush()
			if preflight.Failed(all) {
				return withCode(ExitInvalid, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "path of the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each API call")
	return cmd
}
