package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/reconciler/state"
)

func init() { register(newHistoryCmd) }

func newHistoryCmd(g *Globals) *cobra.Command {
	var (
		f      stateFlags
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history MIGRATION[/WAVE|/NAMESPACE/NAME]",
		Short: "Print the recorded history of a migration, wave or service",
		Long: `History prints the append-only events the daemon and operators recorded
for a migration, oldest first: moves, completions, holds and the reasons,
gate results, pauses, rollbacks and operator requests, with who acted and
the plan commit. Narrowed to a wave or service, it keeps the events of the
whole migration too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return withCode(ExitUsage, fmt.Errorf("--output %q: expected table or json", output))
			}
			repo, err := f.repo()
			if err != nil {
				return err
			}
			st, err := f.readStore()
			if err != nil {
				return err
			}
			migration, wave, service := args[0], "", ""
			if t, err := parseTarget(repo, args[0]); err == nil {
				migration, wave, service = t.m.Name, t.wave, t.service
				if service != "" {
					wave = t.m.Service(service).Wave
				}
			} else if !gone(cmd, st, args[0]) {
				// A migration removed from the plan keeps its history.
				return err
			}
			var events []state.Event
			if st != nil {
				if events, err = st.History(cmd.Context(), migration, service); err != nil {
					return withCode(ExitUsage, err)
				}
			}
			if wave != "" {
				// Keep the wave's events and those of the whole migration.
				events = slices.DeleteFunc(events, func(e state.Event) bool {
					return e.Wave != "" && e.Wave != wave || service == "" && e.Service != "" && e.Wave == ""
				})
			}
			if limit > 0 && len(events) > limit {
				events = events[len(events)-limit:]
			}
			if output == "json" {
				if events == nil {
					events = []state.Event{}
				}
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return withUsage(enc.Encode(events))
			}
			if len(events) == 0 {
				fmt.Fprintf(g.Stdout, "%s: no history yet\n", args[0])
				return nil
			}
			return withUsage(writeHistory(g, events))
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().IntVarP(&limit, "limit", "n", 0, "show only the last N events; 0 shows all")
	return cmd
}

// gone reports whether name is a migration the store has state for.
func gone(cmd *cobra.Command, st state.Store, name string) bool {
	if st == nil || strings.Contains(name, "/") {
		return false
	}
	ms, err := st.Migrations(cmd.Context())
	return err == nil && slices.Contains(ms, name)
}

func writeHistory(g *Globals, events []state.Event) error {
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSERVICE\tKIND\tWEIGHT\tREASON\tACTOR\tCOMMIT")
	for _, e := range events {
		svc := e.Service
		if svc == "" && e.Wave != "" {
			svc = "wave " + e.Wave
		}
		move := "-"
		if e.From != 0 || e.To != 0 || e.Kind == state.EventPromote || e.Kind == state.EventRollback || e.Kind == state.EventRetire {
			move = fmt.Sprintf("%d→%d", e.From, e.To)
		}
		commit := e.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format("2006-01-02 15:04:05 MST"),
			orDash(svc), e.Kind, move, orDash(oneLine(e.Reason)), orDash(e.Actor), orDash(commit))
	}
	return tw.Flush()
}

// oneLine keeps a table row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
