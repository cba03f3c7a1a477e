// Package leader elects one leader among the replicas of ferry run with a
// coordination.k8s.io/v1 Lease, through client-go's leaderelection, and
// fences the leader's writes.
//
// Run campaigns for the Lease and runs a function while this replica holds
// it; the function's context is cancelled when leadership is lost or given
// up. An Elector's Leading method is the fence: a writer asks it before
// every write, and it answers false once RenewDeadline has passed since the
// start of the last successful renewal. Another replica can take the Lease
// over only LeaseDuration after it observed that renewal, and
// RenewDeadline < LeaseDuration, so a replica that loses the Lease stops
// writing before another can start; a write that has passed the fence has
// LeaseDuration - RenewDeadline to finish (the context given to the
// function ends at the fence deadline, which aborts a request in flight on
// the client side). On a clean shutdown the Lease is released only after
// the function returned, so the next leader starts at once and never
// overlaps.
//
// It is not a fencing-token scheme: the API servers ferry writes to do not
// check who holds the Lease, so the guarantee rests on the replicas' clocks
// running at about the same rate (not on them agreeing), as client-go's
// leaderelection documents. It does not decide what a leader does, nor
// export metrics itself: Config.OnChange feeds a gauge.
package leader
