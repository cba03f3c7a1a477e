package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// update rewrites golden files, including the expected output embedded in
// testdata/script/*.txtar: go test ./cmd/ferry/cli -update
var update = flag.Bool("update", false, "rewrite golden files")

// testNow is the time the scripts' ferry reads as now, so that projected
// completion dates are stable.
const testNow = "2026-11-23T11:02:00Z"

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"ferry": ferryMain})
}

// ferryMain is the ferry command of the scripts: the real CLI, with the
// clock stopped at $FERRY_TEST_NOW.
func ferryMain() {
	if s := os.Getenv("FERRY_TEST_NOW"); s != "" {
		now, err := time.Parse(time.RFC3339, s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "FERRY_TEST_NOW:", err)
			os.Exit(ExitUsage)
		}
		clock = func() time.Time { return now }
	}
	os.Exit(Main(os.Args[1:]))
}

// TestScripts runs testdata/script/*.txtar: each builds a Git repository
// of plans with the real git and runs the real CLI on it.
func TestScripts(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the scripts need git: %v", err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		UpdateScripts:       *update,
		RequireExplicitExec: false,
		Setup: func(env *testscript.Env) error {
			home := env.WorkDir + "/home"
			if err := os.Mkdir(home, 0o755); err != nil {
				return err
			}
			for k, v := range map[string]string{
				"HOME":                home,
				"FERRY_TEST_NOW":      testNow,
				"GIT_CONFIG_NOSYSTEM": "1",
				"GIT_CONFIG_GLOBAL":   "/dev/null",
				"GIT_AUTHOR_NAME":     "Plan Author",
				"GIT_AUTHOR_EMAIL":    "author@example.com",
				"GIT_COMMITTER_NAME":  "Plan Author",
				"GIT_COMMITTER_EMAIL": "author@example.com",
				// Fixed dates make commit hashes, which the output names,
				// the same on every run.
				"GIT_AUTHOR_DATE":    "2026-11-20T10:00:00Z",
				"GIT_COMMITTER_DATE": "2026-11-20T10:00:00Z",
			} {
				env.Setenv(k, v)
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": exitsCmd,
		},
	})
}

// exitsCmd is "exits CODE PROGRAM ARGS...": it runs PROGRAM and fails
// unless it exits with CODE; its output becomes stdout and stderr, as
// exec's does. testscript's "! exec" only tells zero from non-zero, and
// ferry's exit codes mean different things to CI.
func exitsCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: code %q: %v", args[0], err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = os.Environ()
	for _, k := range []string{"HOME", "FERRY_TEST_NOW", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL",
		"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
		"GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	fmt.Fprint(ts.Stdout(), stdout.String())
	fmt.Fprint(ts.Stderr(), stderr.String())
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}
