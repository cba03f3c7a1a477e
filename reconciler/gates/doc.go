// Package gates evaluates the gates of a migration plan for one service's
// next promotion: a PromQL query against a threshold or against the same
// query on the source cluster (prometheus), an HTTP confirmation hook
// (webhook), time at the step (soak) and a person's approval (approval).
//
// Every evaluation answers a plans.GateResult: pass, fail or inconclusive,
// with the value and the reason in words. A gate that cannot tell (the
// metrics backend is down or times out, the query returns nothing, NaN or
// infinity, the hook cannot be reached) is inconclusive, never failed: it
// holds a wave but never rolls it back by itself.
//
// The package does not decide anything: the engine (plans.Decide) weighs
// the results. It reads no clock: the evaluation time comes in the Target.
// Each network call has its own timeout, from the gate or DefaultTimeout.
package gates
