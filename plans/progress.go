package plans

import "time"

// State is where a service stands in its migration.
type State string

// Service states.
const (
	StatePending     State = "pending"
	StateProgressing State = "progressing"
	StateHolding     State = "holding"
	StateComplete    State = "complete"
	StateRollingBack State = "rolling-back"
	StateRolledBack  State = "rolled-back"
	StatePaused      State = "paused"
)

// Verdict is a gate's answer.
type Verdict string

// Gate verdicts. Inconclusive holds a wave and never promotes it.
const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
)

// GateResult is one evaluation of one gate.
type GateResult struct {
	Gate    string    `json:"gate"`
	Verdict Verdict   `json:"verdict"`
	Value   float64   `json:"value,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Progress is the durable position of one service: state, not intent.
type Progress struct {
	// Step is the index into the migration's Steps the service is at.
	Step int `json:"step"`
	// Weight is the weight at Step when it was recorded, so that a plan
	// whose steps were edited can be mapped back.
	Weight int `json:"weight"`
	// Since is when the service reached Step; the soak clock.
	Since time.Time `json:"since"`
	State State     `json:"state"`
	// Pending is the step the service is being moved to (write-ahead
	// intent), or NoPending when no move is in flight.
	Pending int `json:"pending"`
	// PendingWeight is the weight of the Pending step, recorded with the
	// intent so that Complete needs no plan and an edit of the steps cannot
	// change what an interrupted move was driving to.
	PendingWeight int `json:"pendingWeight,omitempty"`
	// Failures counts consecutive failed gate evaluations.
	Failures int          `json:"failures"`
	Gates    []GateResult `json:"gates,omitempty"`
	// Blocked says in words why the service is not moving, if it is not.
	Blocked string `json:"blocked,omitempty"`
	// Approvals given with `ferry approve`, by weight approved.
	Approvals []CLIApproval `json:"approvals,omitempty"`
	// Override is an operator's pause or rollback, or ferry's own hold or
	// rollback after repeated gate failures; it stays until `ferry resume`.
	Override *Override `json:"override,omitempty"`
	// Defined is the plan revision that last defined the service, so that
	// a service removed since can still be rendered back to 0% after a
	// restart. The engine carries it along; the daemon sets it.
	Defined string `json:"defined,omitempty"`
}

// NoPending is Progress.Pending when no move is in flight.
const NoPending = -1

// NewProgress returns the progress of a service first seen at now: at step
// 0, pending, with no move in flight. Use it rather than a Progress literal,
// whose zero Pending would read as a move to step 0.
func NewProgress(now time.Time) Progress {
	return Progress{Since: now, State: StatePending, Pending: NoPending}
}

// OverrideAction is what an Override does.
type OverrideAction string

// Override actions.
const (
	// OverridePause freezes the service where it is (`ferry pause`).
	OverridePause OverrideAction = "pause"
	// OverrideRollback sends the service back to step 0 and keeps it there
	// (`ferry rollback`, or onFailure: rollback).
	OverrideRollback OverrideAction = "rollback"
	// OverrideHold freezes the service after repeated gate failures
	// (onFailure: hold).
	OverrideHold OverrideAction = "hold"
)

// Override is a decision taken outside Git that holds a service until an
// operator runs `ferry resume`.
type Override struct {
	Action OverrideAction `json:"action"`
	// By is who asked; "ferry" when the engine decided it.
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// CLIApproval is an approval given with `ferry approve`.
type CLIApproval struct {
	Step int       `json:"step"` // weight approved; 0 means any
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// Steps maps each service to the step index it should be rendered at.
// Services that are absent are rendered at step 0.
type Steps map[ServiceID]int
