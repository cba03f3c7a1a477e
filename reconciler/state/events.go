package state

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/ferry-dev/ferry/plans"
)

// Events returns the history events of an engine decision: the moves it
// starts (not the ones it drives again after a restart), completions,
// rollbacks, removals, edited steps, new gate results, pauses and resumes,
// and every change of the reason a service is held. A service held for the
// same reason as before adds nothing, so the history stays readable when
// the daemon decides every few seconds. before is the progress the plan was
// decided from.
func Events(before map[string]plans.Progress, p plans.Plan, commit string) []Event {
	var out []Event
	for _, d := range p.Decisions {
		old, known := before[d.Service]
		if !known {
			old = plans.NewProgress(p.At)
		}
		ev := func(kind EventKind, reason string) Event {
			return Event{At: p.At, Migration: p.Migration, Wave: d.Wave, Service: d.Service, Kind: kind,
				Reason: reason, Commit: commit, Actor: plans.EngineActor}
		}
		if d.Remapped {
			out = append(out, ev(EventRemap, fmt.Sprintf("steps edited: weight %d is now step %d (weight %d)", old.Weight, d.Progress.Step, d.Progress.Weight)))
		}
		if len(d.Round) > 0 {
			e := ev(EventGates, roundSummary(d.Round))
			e.Gates = d.Round
			out = append(out, e)
		}
		newMove := d.Progress.Pending != plans.NoPending && old.Pending != d.Progress.Pending
		switch d.Action {
		case plans.ActionPromote:
			if newMove {
				e := ev(EventPromote, fmt.Sprintf("step %d to %d", old.Step, d.Step))
				e.From, e.To = old.Weight, d.Weight
				out = append(out, e)
			}
			continue
		case plans.ActionRollback, plans.ActionRetire:
			if newMove {
				kind := EventRollback
				if d.Action == plans.ActionRetire {
					kind = EventRetire
				}
				e := ev(kind, d.Blocked)
				e.From, e.To = old.Weight, d.Weight
				out = append(out, e)
			}
			continue
		case plans.ActionForget:
			out = append(out, ev(EventForget, d.Blocked))
			continue
		case plans.ActionComplete:
			out = append(out, ev(EventComplete, fmt.Sprintf("soaked at weight %d", d.Weight)))
			continue
		}
		switch {
		case d.Progress.State == plans.StatePaused && old.State != plans.StatePaused:
			out = append(out, ev(EventPause, d.Blocked))
			continue
		case old.State == plans.StatePaused && d.Progress.State != plans.StatePaused:
			out = append(out, ev(EventResume, "resumed"))
		}
		if d.Blocked != "" && reasonKey(d.Blocked) != reasonKey(old.Blocked) {
			kind := EventWait
			if d.Action == plans.ActionHold {
				kind = EventHold
			}
			out = append(out, ev(kind, d.Blocked))
		}
	}
	return out
}

func roundSummary(rs []plans.GateResult) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += "; "
		}
		s += string(r.Verdict)
		if r.Reason != "" {
			s += ": " + r.Reason
		} else {
			s += ": " + r.Gate
		}
	}
	return s
}

var duration = regexp.MustCompile(`\d+(\.\d+)?(h|ms|m|s|µs|ns)(\d+(\.\d+)?(h|ms|m|s|µs|ns))*`)

// reasonKey is what must change for a new reason to be recorded: not a
// soak countdown, nor a failing gate's latest value (each round of results
// is recorded on its own).
func reasonKey(reason string) string {
	if strings.HasPrefix(reason, "gate ") {
		if i := strings.Index(reason, ": "); i >= 0 {
			return reason[:i]
		}
	}
	return duration.ReplaceAllString(reason, "")
}
