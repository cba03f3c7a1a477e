// Package state keeps ferry's durable state: where every service of every
// migration stands (progress), the append-only history of every decision,
// and the operator requests (`ferry approve|pause|resume|rollback`) waiting
// for the daemon. Intent lives in Git; this is state.
//
// Two stores implement Store. Bolt, the default, is one bbolt file in the
// daemon's state directory. Kube keeps one ConfigMap per migration in a
// namespace of a home cluster, for daemons that run in Kubernetes without
// a persistent volume.
//
// Writes are atomic per migration: a Save writes the new progress, the
// events that explain it and the removal of the requests it applied in one
// transaction (one bbolt transaction; one ConfigMap update). Concurrency is
// optimistic: Load returns a version and Save fails with ErrConflict when
// another writer saved since, so two daemons never both move a service.
// The Kube store detects a concurrent update through the ConfigMap's
// resourceVersion and re-reads it; a request submitted meanwhile is kept
// and is not a conflict.
//
// The CLI talks to the store directly, while the daemon runs. The Bolt
// store makes that possible by opening the file for each operation and
// closing it right after, with a lock timeout (Options.Timeout): bbolt locks
// its file for as long as it is open, so a daemon that kept it open would
// lock the CLI out. Reads (History, Load, Requests) take a shared lock.
// Operations are short (one transaction), so waiting for the lock is rare
// and brief.
//
// The package does not decide anything (that is plans.Decide) and does not
// talk to the clusters it migrates; the Kube store only touches its own
// ConfigMaps.
package state
