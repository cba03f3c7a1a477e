// Package plans is ferry's domain model: the typed migration plans decoded
// from a validated plan repository, the semantic checks CUE cannot express,
// and the pure arithmetic of steps, waves and windows.
//
// It does no I/O beyond reading the fs.FS it is given and has no clock: the
// time is always passed in. It is not the schema (package schema) and it
// does not render or apply anything.
package plans
