// Package events posts Kubernetes Events (events.k8s.io/v1) about ferry's
// migrations, so that "kubectl events" and "kubectl describe" show what the
// daemon did: promotions, completions, approvals and other requests,
// pauses and resumes (type Normal), holds, rollbacks, retirements and drift
// that ferry restored (type Warning).
//
// The events of a migration regard one ConfigMap per migration in ferry's
// namespace, named ferry-migration.<migration>, which the Recorder creates
// when missing; it holds only a description. The name has a dot so that
// it can never be the name of a state ConfigMap (ferry-<migration>, see
// package state), whatever the migrations are called.
//
// It is not the history: every gate round and every waiting reason is kept
// by the state store ("ferry history"), not posted here, and an Event lives
// only as long as the API server keeps Events (one hour by default).
// Posting is best effort for the caller: Record returns errors to log, and
// a failure changes nothing else.
//
// Coalescing: an Event identical to one posted for the same migration
// (same reason and note) less than CoalesceWindow ago is not posted; the
// next identical one after the window updates the Event already posted,
// setting its series to the number of occurrences seen so far, instead of
// creating another. Occurrences are counted in memory, per Recorder.
package events
