package cli

import (
	"encoding/json"
	"encoding/xml"
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
	// Freezes are the spans of the deny windows between At and Complete
	// (or the horizon).
	Freezes []Freeze `json:"freezes,omitempty"`
	// Location is where the times of the table are read.
	Location *time.Location `json:"-"`
}

// Freeze is one span of a deny window.
type Freeze struct {
	Reason string    `json:"reason,omitempty"`
	From   time.Time `json:"from"`
	// To is zero for a date range without an end.
	To time.Time `json:"to,omitzero"`
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
			switch format {
			case "table", "json", "svg", "html":
			default:
				return withCode(ExitUsage, fmt.Errorf("--format %q: expected table, json, svg or html", format))
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
			switch format {
			case "json":
				enc := json.NewEncoder(g.Stdout)
				enc.SetIndent("", "  ")
				return withUsage(enc.Encode(out))
			case "svg":
				return withUsage(writeTimelineSVG(g.Stdout, out))
			case "html":
				return withUsage(writeTimelineHTML(g.Stdout, out))
			}
			return withUsage(writeTimelines(g.Stdout, out))
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, json, svg or html")
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
			words, spans := cronDeny(d, now, end, t.Location)
			t.Deny = append(t.Deny, words)
			t.Freezes = append(t.Freezes, spans...)
		case (d.To.IsZero() || d.To.After(now)) && d.From.Before(end):
			to := "open end"
			if !d.To.IsZero() {
				to = d.To.In(t.Location).Format(time.DateOnly)
			}
			t.Deny = append(t.Deny, fmt.Sprintf("%s: %s to %s", orDash(d.Reason), d.From.In(t.Location).Format(time.DateOnly), to))
			t.Freezes = append(t.Freezes, Freeze{Reason: d.Reason, From: d.From, To: d.To})
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
func cronDeny(d plans.Deny, now, end time.Time, loc *time.Location) (string, []Freeze) {
	s := fmt.Sprintf("%s: %q for %s", orDash(d.Reason), d.Cron, d.Duration)
	sched, err := cron.ParseStandard(d.Cron)
	if err != nil {
		return s, nil
	}
	var (
		at    []string
		spans []Freeze
	)
	for t := sched.Next(now.Add(-d.Duration).In(loc)); !t.IsZero() && t.Before(end); t = sched.Next(t) {
		if len(at) == maxOccurrences {
			at = append(at, "...")
			break
		}
		at = append(at, t.In(loc).Format("2006-01-02 15:04")+"-"+t.Add(d.Duration).In(loc).Format("15:04"))
		spans = append(spans, Freeze{Reason: d.Reason, From: t, To: t.Add(d.Duration)})
	}
	if len(at) == 0 {
		return s + ", not before the migration completes", nil
	}
	return s + ": " + strings.Join(at, ", "), spans
}

// SVG layout, in pixels.
const (
	svgWidth  = 1200
	svgLabel  = 240 // the column of service names
	svgRow    = 22
	svgHeader = 48
	svgMargin = 16
)

// writeTimelineSVG draws each timeline as a Gantt chart: one row per
// service, one bar per step shaded by its weight, deny windows hatched
// behind them.
func writeTimelineSVG(w io.Writer, ts []Timeline) error {
	var b strings.Builder
	height := svgMargin
	for _, t := range ts {
		height += svgHeader + svgRow*(len(t.Services)+1) + svgMargin
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", svgWidth, height)
	y := svgMargin
	for _, t := range ts {
		y = drawTimeline(&b, t, y)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func drawTimeline(b *strings.Builder, t Timeline, top int) int {
	start, end := t.At, t.Complete
	for _, it := range t.Services {
		for _, s := range it.Reached {
			if s.At.After(end) {
				end = s.At
			}
		}
		if it.Complete.After(end) {
			end = it.Complete
		}
	}
	if !end.After(start) {
		end = start.Add(24 * time.Hour)
	}
	span := float64(end.Sub(start))
	x := func(at time.Time) float64 {
		if at.Before(start) {
			at = start
		}
		if at.After(end) {
			at = end
		}
		return svgLabel + float64(at.Sub(start))/span*float64(svgWidth-svgLabel-svgMargin)
	}
	rows := top + svgHeader
	bottom := rows + svgRow*len(t.Services)
	title := t.Migration + ": not complete within " + t.Horizon
	if !t.Complete.IsZero() {
		title = t.Migration + ": complete " + t.Complete.In(t.Location).Format("2006-01-02 15:04") + " (" + t.Location.String() + ")"
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", svgMargin, top+16, xmlText(title))
	for _, f := range t.Freezes {
		to := f.To
		if to.IsZero() {
			to = end
		}
		if !to.After(start) || f.From.After(end) {
			continue
		}
		fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#d33" fill-opacity="0.15"><title>deny: %s</title></rect>`+"\n",
			x(f.From), rows, max(x(to)-x(f.From), 1), bottom-rows, xmlText(f.Reason))
	}
	// A tick a day, in the window's location.
	days := 0
	for d := midnight(start, t.Location); !d.After(end); d = d.AddDate(0, 0, 1) {
		days++
	}
	every := max(1, days/12)
	for i, d := 0, midnight(start, t.Location); !d.After(end); i, d = i+1, d.AddDate(0, 0, 1) {
		if d.Before(start) || i%every != 0 {
			continue
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/><text x="%.1f" y="%d" fill="#555">%s</text>`+"\n",
			x(d), rows-4, x(d), bottom, x(d)+2, rows-8, d.Format("Mon 02 Jan"))
	}
	for i, it := range t.Services {
		y := rows + i*svgRow
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", svgMargin, y+15, xmlText(it.Wave+"  "+it.Service))
		for j, s := range it.Reached {
			if s.At.IsZero() {
				continue
			}
			until := it.Complete
			if j+1 < len(it.Reached) && !it.Reached[j+1].At.IsZero() {
				until = it.Reached[j+1].At
			}
			if until.IsZero() {
				until = end
			}
			stroke := ""
			if s.Approval {
				stroke = ` stroke="#c60" stroke-width="2"`
			}
			fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#2b7bb9" fill-opacity="%.2f"%s><title>%s: %d%% at %s</title></rect>`+"\n",
				x(s.At), y+3, max(x(until)-x(s.At), 1), svgRow-6, 0.15+0.85*float64(s.Weight)/100, stroke,
				xmlText(it.Service), s.Weight, s.At.In(t.Location).Format("2006-01-02 15:04"))
		}
		if !it.Complete.IsZero() {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%d" r="4" fill="#183"><title>%s complete at %s</title></circle>`+"\n",
				x(it.Complete), y+svgRow/2, xmlText(it.Service), it.Complete.In(t.Location).Format("2006-01-02 15:04"))
		} else if it.Blocked != "" {
			fmt.Fprintf(b, `<text x="%d" y="%d" fill="#a00">%s</text>`+"\n", svgLabel, y+15, xmlText(it.Blocked))
		}
	}
	return bottom + svgRow + svgMargin
}

func midnight(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

func xmlText(s string) string {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return ""
	}
	return b.String()
}

// writeTimelineHTML wraps the SVG chart in a page of its own.
func writeTimelineHTML(w io.Writer, ts []Timeline) error {
	var names []string
	for _, t := range ts {
		names = append(names, t.Migration)
	}
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ferry timeline: %s</title></head><body>\n", xmlText(strings.Join(names, ", ")))
	if err := writeTimelineSVG(w, ts); err != nil {
		return err
	}
	var notes strings.Builder
	for _, t := range ts {
		for _, d := range t.Deny {
			fmt.Fprintf(&notes, "<li>%s: deny window %s</li>\n", xmlText(t.Migration), xmlText(d))
		}
	}
	if notes.Len() > 0 {
		fmt.Fprintf(w, "<ul>\n%s</ul>\n", notes.String())
	}
	_, err := io.WriteString(w, "</body></html>\n")
	return err
}
