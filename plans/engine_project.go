package plans

import (
	"time"
)

// Projection is when one service would move and complete if every gate
// passed, every approval were given and every backend were ready.
type Projection struct {
	Service string
	Wave    string
	// Moves are the projected promotions, in order.
	Moves []ProjectedMove
	// Complete is when the service would complete; zero when it would not
	// within the horizon, and then Blocked says why.
	Complete time.Time
	Blocked  string
}

// ProjectedMove is one projected promotion.
type ProjectedMove struct {
	Step   int
	Weight int
	At     time.Time
	// Approval is set when the move needs an approval that is not given
	// yet.
	Approval bool
}

// maxProjectionRounds bounds the simulation; each round moves at least one
// service one step or advances the clock to the next time one can move.
const maxProjectionRounds = 100000

// Project projects, from the progress recorded at now, the earliest time
// each service of m would complete, assuming every gate passes at the first
// chance: it runs the engine itself over simulated time, so the projection
// follows the same rules (windows, deny windows, soak, waves, dependencies,
// maxConcurrent). Pauses and rollbacks in Git hold services as they would.
// Services still moving after horizon have a zero Complete.
func Project(now time.Time, m *Migration, progress map[string]Progress, horizon time.Duration) []Projection {
	prog := make(map[string]Progress, len(progress))
	for k, v := range progress {
		prog[k] = v
	}
	byRef := map[string]*Projection{}
	var out []*Projection
	for _, w := range m.Waves {
		for _, s := range w.Services {
			p := &Projection{Service: s.Ref(), Wave: w.Name}
			byRef[s.Ref()] = p
			out = append(out, p)
			if pr, ok := prog[s.Ref()]; ok && pr.State == StateComplete {
				p.Complete = pr.Since
			}
		}
	}
	end := now.Add(horizon)
	cur := now
	obs := passing(m, cur)
	for i := 0; i < maxProjectionRounds && !cur.After(end); i++ {
		for _, rs := range obs.Gates {
			for j := range rs {
				rs[j].At = cur
			}
		}
		plan := Decide(cur, m, withApprovals(m, prog, now), obs)
		moved := false
		var next time.Time
		for _, d := range plan.Decisions {
			p := byRef[d.Service]
			switch d.Action {
			case ActionPromote, ActionRollback, ActionRetire:
				if d.Action == ActionPromote && p != nil {
					p.Moves = append(p.Moves, ProjectedMove{
						Step: d.Step, Weight: d.Weight, At: cur,
						Approval: needsApproval(m.gatesOf(d.Wave, d.Weight)) && !approved(m, d.Wave, d.Service, progress[d.Service], d.Weight),
					})
				}
				prog[d.Service] = Complete(stripApprovals(d.Progress), cur)
				moved = true
			case ActionComplete:
				prog[d.Service] = stripApprovals(d.Progress)
				p.Complete = cur
				moved = true
			case ActionForget:
				delete(prog, d.Service)
				moved = true
			default:
				prog[d.Service] = stripApprovals(d.Progress)
				moved = moved || d.Remapped
			}
			if p != nil {
				p.Blocked = d.Blocked
			}
			if nb := d.NotBefore; nb.After(cur) && (next.IsZero() || nb.Before(next)) {
				next = nb
			}
		}
		if moved {
			continue // what moved may let others move at the same time
		}
		if next.IsZero() {
			break
		}
		cur = next
	}
	res := make([]Projection, len(out))
	for i, p := range out {
		if !p.Complete.IsZero() {
			p.Blocked = ""
		}
		res[i] = *p
	}
	return res
}

// passing returns observations in which every gate of m passes at now and
// every backend is ready.
func passing(m *Migration, now time.Time) Observations {
	obs := Observations{Gates: map[string][]GateResult{}, Readiness: map[string]Readiness{}}
	for _, w := range m.Waves {
		for _, s := range w.Services {
			for _, g := range external(append(append([]Gate(nil), m.Gates...), w.Gates...)) {
				obs.Gates[s.Ref()] = append(obs.Gates[s.Ref()], GateResult{Gate: g.Name, Verdict: Pass, At: now})
			}
			obs.Readiness[s.Ref()] = Readiness{Ready: true}
		}
	}
	return obs
}

func (m *Migration) gatesOf(wave string, weight int) []Gate {
	var out []Gate
	gs := m.Gates
	if w := m.Wave(wave); w != nil {
		gs = append(append([]Gate(nil), m.Gates...), w.Gates...)
	}
	for _, g := range gs {
		if g.AppliesTo(weight) {
			out = append(out, g)
		}
	}
	return out
}

func approved(m *Migration, wave, ref string, p Progress, weight int) bool {
	s := m.Service(ref)
	if s == nil {
		return false
	}
	_, ok := ApprovedBy(m, m.Wave(wave), s, p, weight)
	return ok
}

// projected marks the approvals the projection assumes.
const projected = "\x00projected"

// withApprovals returns progress where every service approves every step,
// so that the projection is not held by missing approvals.
func withApprovals(m *Migration, progress map[string]Progress, now time.Time) map[string]Progress {
	out := make(map[string]Progress, len(progress))
	for k, v := range progress {
		out[k] = v
	}
	for _, s := range m.Services() {
		p, ok := out[s.Ref()]
		if !ok {
			p = NewProgress(now)
		}
		p.Approvals = append(append([]CLIApproval(nil), p.Approvals...), CLIApproval{By: projected})
		out[s.Ref()] = p
	}
	return out
}

// stripApprovals removes the projected approval again.
func stripApprovals(p Progress) Progress {
	var keep []CLIApproval
	for _, a := range p.Approvals {
		if a.By != projected {
			keep = append(keep, a)
		}
	}
	p.Approvals = keep
	return p
}
