// Package prom runs a real Prometheus for tests: the binary of the Debian
// package `prometheus` (/usr/bin/prometheus, or $FERRY_PROMETHEUS),
// started on a free loopback port with a temporary configuration and
// storage directory, scraping every second the in-test workloads it is
// given, and stopped when the test ends.
//
// A Workload is a small HTTP server whose request counters (and any gauge)
// the test sets; Prometheus scrapes it like a real service's /metrics.
//
// When the binary is missing the test fails, saying to run
// `apt-get install -y prometheus`; it is never skipped. Nothing outside
// test code imports this package.
package prom
