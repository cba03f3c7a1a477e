package plans

import (
	"errors"
	"fmt"
	"time"
)

// RequestKind is what an operator asks with the CLI.
type RequestKind string

// Operator requests.
const (
	RequestApprove  RequestKind = "approve"
	RequestPause    RequestKind = "pause"
	RequestResume   RequestKind = "resume"
	RequestRollback RequestKind = "rollback"
)

// Request is an operator's request given with `ferry approve|pause|resume|
// rollback`, kept in the state store until the daemon applies it. Intent
// belongs in Git; requests are for when a person must act faster than a
// pull request, and every one is recorded in the history.
type Request struct {
	// ID is assigned by the store.
	ID        string      `json:"id"`
	Kind      RequestKind `json:"kind"`
	Migration string      `json:"migration"`
	// Wave and Service ("namespace/name") narrow the scope; both empty
	// means every service of the migration.
	Wave    string `json:"wave,omitempty"`
	Service string `json:"service,omitempty"`
	// Step is, for an approval, the weight approved; 0 approves any step.
	Step   int       `json:"step,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Scope returns "migration", "migration/wave" or "migration/namespace/name".
func (r Request) Scope() string {
	switch {
	case r.Service != "":
		return r.Migration + "/" + r.Service
	case r.Wave != "":
		return r.Migration + "/" + r.Wave
	}
	return r.Migration
}

// ErrUnknownScope is returned for a request naming a wave or service the
// migration does not have.
var ErrUnknownScope = errors.New("no such wave or service")

// ApplyRequest applies an operator request to the progress of migration m
// and returns the new progress (progress itself is not modified) and the
// refs of the services it changed, in wave order.
//
// approve adds an approval to each service in scope; pause freezes them;
// rollback sends them to step 0 and keeps them there; resume lifts a pause,
// a rollback or a hold (operator's or ferry's) and clears the failure count.
// A request for a wave applies to the services the wave has now.
func ApplyRequest(m *Migration, progress map[string]Progress, r Request) (map[string]Progress, []string, error) {
	var scope []*Service
	switch {
	case r.Service != "":
		s := m.Service(r.Service)
		if s == nil || r.Wave != "" && s.Wave != r.Wave {
			return nil, nil, fmt.Errorf("migration %s: service %s: %w", m.Name, r.Service, ErrUnknownScope)
		}
		scope = []*Service{s}
	case r.Wave != "":
		w := m.Wave(r.Wave)
		if w == nil {
			return nil, nil, fmt.Errorf("migration %s: wave %s: %w", m.Name, r.Wave, ErrUnknownScope)
		}
		scope = w.Services
	default:
		scope = m.Services()
	}
	if r.Kind == RequestApprove && r.Step != 0 && !hasWeight(m, r.Step) {
		return nil, nil, fmt.Errorf("migration %s: approve step %d: no step has that weight", m.Name, r.Step)
	}
	out := make(map[string]Progress, len(progress))
	for k, v := range progress {
		out[k] = v
	}
	var changed []string
	for _, s := range scope {
		ref := s.Ref()
		p, ok := out[ref]
		if !ok {
			p = NewProgress(r.At)
		}
		switch r.Kind {
		case RequestApprove:
			p.Approvals = append(append([]CLIApproval(nil), p.Approvals...), CLIApproval{Step: r.Step, By: r.By, At: r.At})
		case RequestPause:
			if p.State == StateComplete {
				continue
			}
			p.Override = &Override{Action: OverridePause, By: r.By, At: r.At, Reason: r.Reason}
		case RequestRollback:
			p.Override = &Override{Action: OverrideRollback, By: r.By, At: r.At, Reason: r.Reason}
		case RequestResume:
			if p.Override == nil && p.State != StateRolledBack {
				continue
			}
			p.Override = nil
			p.Failures = 0
		default:
			return nil, nil, fmt.Errorf("migration %s: unknown request %q", m.Name, r.Kind)
		}
		out[ref] = p
		changed = append(changed, ref)
	}
	return out, changed, nil
}

func hasWeight(m *Migration, w int) bool {
	for _, s := range m.Steps {
		if s.Weight == w {
			return true
		}
	}
	return false
}
