package gitserver_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/test/gitserver"
)

// TestServeStopRestart: a pushed commit is what a clone over HTTP gets; a
// stopped server refuses; a restarted one serves again on the same URL.
func TestServeStopRestart(t *testing.T) {
	r := gitserver.Start(t)
	sha := r.CommitPush("plans", map[string]string{"plan.yaml": "clusters: {}\n"})
	lsRemote := func() (string, error) {
		out, err := exec.Command("git", "ls-remote", r.URL(), "refs/heads/main").CombinedOutput()
		return string(out), err
	}
	out, err := lsRemote()
	if err != nil || !strings.HasPrefix(out, sha) {
		t.Fatalf("ls-remote: %v %s; want %s", err, out, sha)
	}
	url := r.URL()
	r.Stop()
	if out, err := lsRemote(); err == nil {
		t.Fatalf("ls-remote of a stopped server succeeded: %s", out)
	}
	r.Restart()
	if r.URL() != url {
		t.Errorf("restart moved the URL: %s -> %s", url, r.URL())
	}
	if out, err := lsRemote(); err != nil || !strings.HasPrefix(out, sha) {
		t.Fatalf("after restart: %v %s", err, out)
	}
}
