package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/plans"
)

func init() { register(newPlanCmd) }

// newPlanCmd groups the commands that look at plans ahead of time.
func newPlanCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Look ahead at what the plans will do",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTimelineCmd(g))
	return cmd
}

// Timeline is the projected schedule of one migration.
type Timeline struct {
	Migration string `json:"migration"`
	// At is when the projection starts; Horizon how far it looks.
	At       time.Time      `json:"at"`
	Horizon  string         `json:"horizon"`
	Steps    []int          `json:"steps"`
	Services []TimelineItem `json:"services"`
	// Complete is when the last service would complete; zero when some
	// would not within the horizon.
	Complete time.Time `json:"complete,omitzero"`
	// Deny lists the deny windows of the plan, in words.
	Deny []string `json:"deny,omitempty"`
	// Location is where the times of the table are read.
	Location *time.Location `json:"-"`
}

// TimelineItem is the projected schedule of one service.
type TimelineItem struct {
	Service string `json:"service"`
	Wave    string `json:"wave"`
	// Reached holds, by weight, when the service reaches it; a step it is
	// at or past already is the zero time with Done set.
	Reached  []TimelineStep `json:"steps"`
	Complete time.Time      `json:"complete,omitzero"`
	Blocked  string         `json:"blocked,omitempty"`
}

// TimelineStep is when a service reaches one step.
type TimelineStep struct {
	Weight int       `json:"weight"`
	At     time.Time `json:"at,omitzero"`
	Done   bool      `json:"done,omitempty"`
	// Approval is set when the move needs an approval not given yet.
	Approval bool `json:"approval,omitempty"`
}

func newTimelineCmd(g *Globals) *cobra.Command {
	var (
		f       stateFlags
		format  string
		horizon time.Duration
	)
	cmd := &cobra.Command{
		Use:   "timeline [MIGRATION]",
		Short: "Project when each service reaches each step if every gate passes",
		Long: `Timeline projects, from the progress recorded now, the earliest time each
service of a migration reaches each step and completes, assuming every gate
passes at its first chance and every approval is given. It runs the engine
over simulated time, so windows, deny windows, soak, waves, dependencies and
maxConcurrent hold services exactly as the daemon would. Moves marked * need
an approval not given yet.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return withCode(ExitUsage, fmt.Errorf("--format %q: expected table or json", format))
			}
			if horizon <= 0 {
				return withCode(ExitUsage, fmt.Errorf("--horizon %s: expected a positive duration", horizon))
			}
			repo, err := f.repo()
			if err != nil {
				return err
			}
			ms, err := migrations(repo, args)
			if err != nil {
				return err
			}
			st, err := f.readStore()
			if err != nil {
				return err
			}
			now := clock()
			var out []Timeline
			for _, m := range ms {
				snap, _, err := load(cmd.Context(), st, m.Name)
				if err != nil {
					return withCode(ExitUsage, err)
				}
				out = append(out, timeline(now, m, snap.Services, horizon))
			}
			if format == "json" {
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return withUsage(enc.Encode(out))
			}
			return withUsage(writeTimelines(g.Stdout, out))
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().DurationVar(&horizon, "horizon", 365*24*time.Hour, "how far ahead to project")
	return cmd
}

func timeline(now time.Time, m *plans.Migration, progress map[string]plans.Progress, horizon time.Duration) Timeline {
	t := Timeline{Migration: m.Name, At: now, Horizon: horizon.String(), Location: m.Window.Location}
	if t.Location == nil {
		t.Location = time.Local
	}
	for _, s := range m.Steps[1:] {
		t.Steps = append(t.Steps, s.Weight)
	}
	all := true
	for _, p := range plans.Project(now, m, progress, horizon) {
		it := TimelineItem{Service: p.Service, Wave: p.Wave, Complete: p.Complete, Blocked: p.Blocked}
		at := progress[p.Service].Step
		for i := 1; i < len(m.Steps); i++ {
			ts := TimelineStep{Weight: m.Steps[i].Weight, Done: i <= at}
			for _, mv := range p.Moves {
				if mv.Step == i {
					ts.At, ts.Done, ts.Approval = mv.At, false, mv.Approval
				}
			}
			it.Reached = append(it.Reached, ts)
		}
		if p.Complete.IsZero() {
			all = false
		} else if p.Complete.After(t.Complete) {
			t.Complete = p.Complete
		}
		t.Services = append(t.Services, it)
	}
	if !all {
		t.Complete = time.Time{}
	}
	end := now.Add(horizon)
	if !t.Complete.IsZero() {
		end = t.Complete
	}
	for _, d := range m.Window.Deny {
		switch {
		case d.Cron != "":
			t.Deny = append(t.Deny, cronDeny(d, now, end, t.Location))
		case (d.To.IsZero() || d.To.After(now)) && d.From.Before(end):
			to := "open end"
			if !d.To.IsZero() {
				to = d.To.In(t.Location).Format(time.DateOnly)
			}
			t.Deny = append(t.Deny, fmt.Sprintf("%s: %s to %s", orDash(d.Reason), d.From.In(t.Location).Format(time.DateOnly), to))
		}
	}
	if in, d := plans.InDeny(now, m.Window); in {
		t.Deny = append(t.Deny, fmt.Sprintf("in effect now: %s", orDash(d.Reason)))
	}
	return t
}

func writeTimelines(w io.Writer, ts []Timeline) error {
	for i, t := range ts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		when := func(at time.Time) string {
			if at.Equal(t.At) {
				return "now"
			}
			return at.In(t.Location).Format("2006-01-02 15:04")
		}
		done := "not within " + t.Horizon
		if !t.Complete.IsZero() {
			done = "complete " + when(t.Complete)
		}
		fmt.Fprintf(w, "MIGRATION %s: %s (times in %s)\n", t.Migration, done, t.Location)
		for _, d := range t.Deny {
			fmt.Fprintf(w, "deny window %s\n", d)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		head := []string{"WAVE", "SERVICE"}
		for _, s := range t.Steps {
			head = append(head, fmt.Sprintf("%d%%", s))
		}
		head = append(head, "COMPLETE")
		fmt.Fprintln(tw, strings.Join(head, "\t"))
		for _, it := range t.Services {
			row := []string{it.Wave, it.Service}
			for _, s := range it.Reached {
				switch {
				case s.Done:
					row = append(row, "done")
				case s.At.IsZero():
					row = append(row, "-")
				case s.Approval:
					row = append(row, when(s.At)+"*")
				default:
					row = append(row, when(s.At))
				}
			}
			switch {
			case !it.Complete.IsZero():
				row = append(row, when(it.Complete))
			case it.Blocked != "":
				row = append(row, "- ("+oneLine(it.Blocked)+")")
			default:
				row = append(row, "-")
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// maxOccurrences bounds the occurrences of a recurring deny window listed.
const maxOccurrences = 8

// cronDeny says a recurring deny window and when it recurs between now and
// end, which are the freezes the projection had to wait out.
func cronDeny(d plans.Deny, now, end time.Time, loc *time.Location) string {
	s := fmt.Sprintf("%s: %q for %s", orDash(d.Reason), d.Cron, d.Duration)
	sched, err := cron.ParseStandard(d.Cron)
	if err != nil {
		return s
	}
	var at []string
	for t := sched.Next(now.Add(-d.Duration).In(loc)); !t.IsZero() && t.Before(end); t = sched.Next(t) {
		if len(at) == maxOccurrences {
			at = append(at, "...")
			break
		}
		at = append(at, t.In(loc).Format("2006-01-02 15:04")+"-"+t.Add(d.Duration).In(loc).Format("15:04"))
	}
	if len(at) == 0 {
		return s + ", not before the migration completes"
	}
	return s + ": " + strings.Join(at, ", ")
}
