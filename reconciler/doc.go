// Package reconciler is ferry's daemon loop: it takes plan snapshots from
// the Git source, decides each service's step with the engine (package
// plans), evaluates gates, persists progress write-ahead, renders with
// package renderer and hands the result to a target (a directory of
// overlays today; clusters through reconciler/apply).
//
// It is not the engine (pure, in plans), nor the source, store, gates or
// applier, which live in sub-packages and are composed here.
package reconciler
