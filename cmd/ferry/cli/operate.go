package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
)

func init() {
	register(func(g *Globals) *cobra.Command {
		return newOperateCmd(g, plans.RequestApprove, "Approve the next step of a migration, wave or service",
			`Approve records an approval for the services in scope, for the step of
weight --step (every step when --step is 0), as an approval gate asks.`)
	})
	register(func(g *Globals) *cobra.Command {
		return newOperateCmd(g, plans.RequestPause, "Freeze a migration, wave or service where it is",
			`Pause freezes the services in scope at their current step until ferry resume.`)
	})
	register(func(g *Globals) *cobra.Command {
		return newOperateCmd(g, plans.RequestResume, "Lift a pause, rollback or hold",
			`Resume lifts an operator's pause or rollback, or ferry's own hold or rollback
after failed gates, and clears the failure count.`)
	})
	register(func(g *Globals) *cobra.Command {
		return newOperateCmd(g, plans.RequestRollback, "Send a migration, wave or service back to step 0 and keep it there",
			`Rollback sends the services in scope back to step 0 on every cluster at
once, whatever the window, and keeps them there until ferry resume.`)
	})
}

func newOperateCmd(g *Globals, kind plans.RequestKind, short, long string) *cobra.Command {
	var (
		f      stateFlags
		step   int
		by     string
		reason string
	)
	cmd := &cobra.Command{
		Use:   string(kind) + " MIGRATION[/WAVE|/NAMESPACE/NAME]",
		Short: short,
		Long: long + `

The request goes to the state store, where the daemon applies it at its next
tick; it is safe to run while the daemon runs. Every request is recorded in
the history with who asked and why. Intent belongs in Git: use requests when
a person must act faster than a pull request.

Exit codes: 0 submitted, 1 unknown migration, wave or service, 2 usage error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := f.repo()
			if err != nil {
				return err
			}
			t, err := parseTarget(repo, args[0])
			if err != nil {
				return err
			}
			if by == "" {
				return withCode(ExitUsage, errors.New("--by is required when $USER is not set"))
			}
			r := plans.Request{Kind: kind, Migration: t.m.Name, Wave: t.wave, Service: t.service,
				Step: step, By: by, At: clock().UTC(), Reason: reason}
			// The engine's own check, so that the daemon cannot refuse what
			// was accepted here (an approval of a weight no step has).
			if _, _, err := plans.ApplyRequest(t.m, nil, r); err != nil {
				return withCode(ExitInvalid, err)
			}
			st, err := f.store()
			if err != nil {
				return err
			}
			r, err = st.Submit(cmd.Context(), r)
			if err != nil {
				return withCode(ExitUsage, err)
			}
			fmt.Fprintf(g.Stdout, "%s %s: submitted as request %s by %s (%d service(s)); the daemon applies it at its next tick\n",
				kind, r.Scope(), r.ID, r.By, len(t.services()))
			return nil
		},
	}
	f.add(cmd)
	if kind == plans.RequestApprove {
		cmd.Flags().IntVar(&step, "step", 0, "weight of the step approved; 0 approves every step")
	}
	cmd.Flags().StringVar(&by, "by", currentUser(), "who asks, for the history")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history")
	return cmd
}

// currentUser is who runs ferry: $USER, else the account's name.
func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
