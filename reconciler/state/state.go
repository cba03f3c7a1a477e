package state

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ferry-dev/ferry/plans"
)

// ErrConflict is returned by Save when another writer saved the migration's
// progress since it was loaded: load again and decide again.
var ErrConflict = errors.New("state: progress changed since it was loaded")

// Store keeps progress, history and operator requests. Its methods are safe
// for concurrent use, also across processes sharing the same backing store.
type Store interface {
	Progress
	History
	Requests
}

// Progress loads and saves the progress of a migration's services.
type Progress interface {
	// Load returns the migration's progress; a migration never saved has
	// version 0 and no services.
	Load(ctx context.Context, migration string) (Snapshot, error)
	// Save writes a change atomically and returns the new version.
	Save(ctx context.Context, c Change) (uint64, error)
	// Migrations lists, sorted, the migrations with saved state.
	Migrations(ctx context.Context) ([]string, error)
}

// History reads the append-only history of decisions.
type History interface {
	// History returns the events of a migration, oldest first; with a
	// service ("namespace/name"), only that service's events and the
	// migration's own.
	History(ctx context.Context, migration, service string) ([]Event, error)
}

// Requests takes operator requests from the CLI to the daemon.
type Requests interface {
	// Submit stores a request and records it in the history. It assigns
	// the request's ID and returns the request as stored.
	Submit(ctx context.Context, r plans.Request) (plans.Request, error)
	// Pending returns the migration's requests not applied yet, oldest
	// first. A Save lists the ones it applied in Change.Done.
	Pending(ctx context.Context, migration string) ([]plans.Request, error)
}

// Snapshot is the progress of every service of one migration.
type Snapshot struct {
	Migration string
	// Version counts saves; pass it back in Change.Version.
	Version uint64
	// Services holds the progress by service ref ("namespace/name").
	Services map[string]plans.Progress
	// Commit is the plan revision of the last save, SavedAt its time.
	Commit  string
	SavedAt time.Time
}

// Change is one atomic write to a migration's state.
type Change struct {
	Migration string
	// Version is the version Load returned. Save fails with ErrConflict
	// when the stored version differs.
	Version uint64
	// Services is the new progress of every service; a nil map leaves the
	// progress alone (and skips the version check), for a change that
	// only records events or applied requests.
	Services map[string]plans.Progress
	Commit   string
	At       time.Time
	// Events are appended to the history, in order.
	Events []Event
	// Done lists the IDs of the requests this change applied; they are
	// removed from Pending.
	Done []string
}

// EventKind says what an event records.
type EventKind string

// Event kinds.
const (
	EventPromote  EventKind = "promote"
	EventComplete EventKind = "complete"
	EventHold     EventKind = "hold"
	EventWait     EventKind = "wait"
	EventGates    EventKind = "gates"
	EventRollback EventKind = "rollback"
	EventRetire   EventKind = "retire"
	EventForget   EventKind = "forget"
	EventRemap    EventKind = "remap"
	EventPause    EventKind = "pause"
	EventResume   EventKind = "resume"
	EventApprove  EventKind = "approve"
	// EventRequest records an operator request when it is submitted; the
	// effect is recorded when the daemon applies it.
	EventRequest EventKind = "request"
)

// Event is one entry of a migration's history.
type Event struct {
	// Seq numbers the migration's events from 1; assigned by the store.
	Seq       uint64    `json:"seq"`
	At        time.Time `json:"at"`
	Migration string    `json:"migration"`
	Wave      string    `json:"wave,omitempty"`
	// Service is "namespace/name"; empty for an event of the migration.
	Service string    `json:"service,omitempty"`
	Kind    EventKind `json:"kind"`
	// From and To are weights, for moves.
	From   int                `json:"from,omitempty"`
	To     int                `json:"to,omitempty"`
	Reason string             `json:"reason,omitempty"`
	Gates  []plans.GateResult `json:"gates,omitempty"`
	// Commit is the plan revision; Actor who acted ("ferry" for the
	// daemon, a person for a request).
	Commit string `json:"commit,omitempty"`
	Actor  string `json:"actor,omitempty"`
	// Request is the ID of the operator request the event comes from.
	Request string `json:"request,omitempty"`
}

// record is what a store keeps for one migration, besides its history.
type record struct {
	Version     uint64                    `json:"version"`
	Commit      string                    `json:"commit,omitempty"`
	SavedAt     time.Time                 `json:"savedAt,omitzero"`
	Services    map[string]plans.Progress `json:"services"`
	Requests    []plans.Request           `json:"requests,omitempty"`
	NextEvent   uint64                    `json:"nextEvent"`
	NextRequest uint64                    `json:"nextRequest"`
	// Chunks counts the history chunks the Kube store sealed.
	Chunks int `json:"historyChunks,omitempty"`
}

func (r *record) snapshot(migration string) Snapshot {
	s := Snapshot{Migration: migration, Version: r.Version, Services: r.Services, Commit: r.Commit, SavedAt: r.SavedAt}
	if s.Services == nil {
		s.Services = map[string]plans.Progress{}
	}
	return s
}

// apply applies a change to the record and returns the events numbered.
func (r *record) apply(c Change) ([]Event, error) {
	if c.Services != nil {
		if r.Version != c.Version {
			return nil, fmt.Errorf("migration %s: saved at version %d, loaded at %d: %w", c.Migration, r.Version, c.Version, ErrConflict)
		}
		r.Version++
		r.Services = c.Services
		r.Commit = c.Commit
		r.SavedAt = c.At
	}
	if len(c.Done) > 0 {
		done := map[string]bool{}
		for _, id := range c.Done {
			done[id] = true
		}
		keep := r.Requests[:0:0]
		for _, q := range r.Requests {
			if !done[q.ID] {
				keep = append(keep, q)
			}
		}
		r.Requests = keep
	}
	return r.number(c.Migration, c.Events), nil
}

func (r *record) number(migration string, events []Event) []Event {
	out := make([]Event, len(events))
	for i, e := range events {
		r.NextEvent++
		e.Seq = r.NextEvent
		if e.Migration == "" {
			e.Migration = migration
		}
		out[i] = e
	}
	return out
}

// submit adds a request and returns it with its ID and the event that
// records it.
func (r *record) submit(q plans.Request) (plans.Request, Event) {
	r.NextRequest++
	q.ID = fmt.Sprintf("%s-%d", q.Migration, r.NextRequest)
	r.Requests = append(r.Requests, q)
	e := r.number(q.Migration, []Event{requestEvent(q)})[0]
	return q, e
}

func requestEvent(q plans.Request) Event {
	reason := string(q.Kind) + " " + q.Scope()
	if q.Kind == plans.RequestApprove {
		if q.Step != 0 {
			reason += fmt.Sprintf(" step %d", q.Step)
		} else {
			reason += " every step"
		}
	}
	if q.Reason != "" {
		reason += ": " + q.Reason
	}
	return Event{At: q.At, Migration: q.Migration, Wave: q.Wave, Service: q.Service, Kind: EventRequest,
		Reason: reason, Actor: q.By, Request: q.ID}
}

func checkRequest(q plans.Request) error {
	switch {
	case q.Migration == "":
		return errors.New("state: request names no migration")
	case q.By == "":
		return errors.New("state: request says nobody asked")
	}
	switch q.Kind {
	case plans.RequestApprove, plans.RequestPause, plans.RequestResume, plans.RequestRollback:
		return nil
	}
	return fmt.Errorf("state: unknown request %q", q.Kind)
}

// filter keeps a service's events and those of the whole migration or a
// wave.
func filter(events []Event, service string) []Event {
	if service == "" {
		return events
	}
	out := events[:0:0]
	for _, e := range events {
		if e.Service == service || e.Service == "" {
			out = append(out, e)
		}
	}
	return out
}

func sortRequests(rs []plans.Request) {
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].At.Before(rs[j].At) })
}
