// Package e2e holds end-to-end tests of ferry as its users run it: the
// ferry binary, built once by TestMain, as a separate process against real
// Git repositories and real API servers (test/cluster), and `make run`
// itself. It has no code outside its tests.
//
// Crash tests SIGKILL the daemon at random moments while it promotes and
// check DESIGN.md's invariants on what it left behind. go test runs them
// with 20 promotions; `make test-faults` with FERRY_FAULT_PROMOTIONS=50.
package e2e
