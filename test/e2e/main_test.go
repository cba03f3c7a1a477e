package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	// moduleRoot is the directory of ferry's go.mod.
	moduleRoot string
	// ferryBin is the ferry binary built from moduleRoot for this run.
	ferryBin string
)

// TestMain builds ferry once, from the checkout the tests belong to, so
// that every test runs the daemon as a real process (its own signals, its
// own file locks, killed and restarted).
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	root, err := findModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	moduleRoot = root
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, "./cmd/ferry")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/ferry in %s: %v\n%s", moduleRoot, err, out)
		return 1
	}
	return m.Run()
}

// findModuleRoot returns the directory of the go.mod the test package is
// in, and checks that it is ferry's.
func findModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	if !bytes.Contains(b, []byte("module github.com/ferry-dev/ferry\n")) {
		return "", fmt.Errorf("%s is not the go.mod of github.com/ferry-dev/ferry", gomod)
	}
	return filepath.Dir(gomod), nil
}

// runFlags returns the flags every daemon of these tests gets besides its
// own: the HTTP server, when this ferry has one, on a free loopback port,
// so that daemons of parallel tests never fight over the default address.
var runFlags = sync.OnceValues(func() ([]string, error) {
	out, err := exec.Command(ferryBin, "run", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ferry run --help: %w\n%s", err, out)
	}
	if bytes.Contains(out, []byte("--http-addr")) {
		return []string{"--http-addr", "127.0.0.1:0"}, nil
	}
	return nil, nil
})

// extraRunFlags is runFlags for a test.
func extraRunFlags(t *testing.T) []string {
	t.Helper()
	f, err := runFlags()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// logTail returns the last n lines of a log file, for a failure message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + strings.Join(lines, "\n\t")
}
