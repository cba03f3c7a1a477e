// Package apply puts rendered objects into one cluster with server-side
// apply, keeps an inventory of what ferry applied per migration, prunes
// from that inventory, restores drift, and checks the readiness
// preconditions of a backend.
//
// It is not a renderer (objects come in rendered) and does not decide
// steps or log: Apply returns a ChangeSet, a value the caller reports.
//
// # Apply
//
// Every object is first applied as a server-side dry run with field
// manager "ferry". When the dry-run result equals the live object, ignoring
// managedFields, resourceVersion, generation and status, nothing is
// written, so a steady state costs zero writes. Otherwise the object is
// applied for real.
//
// A conflict with another field manager whose last operation on the field
// was an Apply (kubectl apply --server-side, another controller) is
// reported per object as ActionConflict and as a *ConflictError, unless
// Options.ForceConflicts is set. A conflict with a manager that only
// Updated the field (kubectl edit, kubectl patch) is drift: ferry takes its
// field back with force and reports ActionConfigured with Drift set.
// Objects whose desired state did not change since the last Apply but
// whose live state did are reported with Drift too.
//
// # Partial objects
//
// A partial object (renderer.Object.Partial) is a Service ferry does not
// own; it carries only ferry's labels and annotations. The applier never
// creates it (a missing Service is skipped with a reason), never deletes
// it and never forces it. When it leaves the render, ferry applies it with
// no labels or annotations, which makes the API server remove the fields
// ferry alone owned: the fields are released, the Service stays.
//
// # Inventory and prune
//
// The inventory of a migration in a cluster is the ConfigMap
// ferry-inventory-<migration> in namespace ferry-system. Prune deletes what
// the inventory has and the render has not, only after every apply
// succeeded, never on an empty render unless Options.PruneEmpty is set,
// and only objects labelled app.kubernetes.io/managed-by: ferry. Namespaces
// and CRDs are never pruned: deleting one deletes everything in it.
//
// Namespaces and CRDs of a render are applied first, one at a time; the
// other objects concurrently (Options.Concurrency).
package apply
