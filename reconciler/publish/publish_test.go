package publish_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/publish"
	"github.com/ferry-dev/ferry/renderer"
	"github.com/ferry-dev/ferry/test/gitserver"
)

func render(t *testing.T, steps plans.Steps) *renderer.Result {
	t.Helper()
	repo, err := plans.Load(os.DirFS("../../examples/linkerd-eks"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := renderer.Render(repo, steps)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func lsRemote(t *testing.T, url string) string {
	t.Helper()
	out, err := exec.Command("git", "ls-remote", url, "refs/heads/rendered").CombinedOutput()
	if err != nil {
		t.Fatalf("ls-remote: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestPublish pushes renders to a branch of a repository served by git
// http-backend: the first render creates the branch (apart from the
// repository's main), an unchanged render pushes nothing, a changed
// one pushes one commit, a branch moved by someone else is built upon, and
// a restarted publisher picks up where the branch is.
func TestPublish(t *testing.T) {
	srv := gitserver.Start(t)
	srv.AllowPush()
	srv.CommitPush("readme", map[string]string{"README.md": "rendered overlays\n"})
	ctx := context.Background()
	work := t.TempDir()
	p, err := publish.New(ctx, srv.URL(), "rendered", filepath.Join(work, "clone"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(ctx, render(t, plans.Steps{})); err != nil {
		t.Fatal(err)
	}
	first := lsRemote(t, srv.URL())
	if first == "" {
		t.Fatal("no branch rendered after the first render")
	}
	if err := p.Apply(ctx, render(t, plans.Steps{})); err != nil {
		t.Fatal(err)
	}
	if got := lsRemote(t, srv.URL()); got != first {
		t.Errorf("an unchanged render pushed: %s -> %s", first, got)
	}

	repo, _ := plans.Load(os.DirFS("../../examples/linkerd-eks"))
	m := repo.Migrations[0]
	s := m.Services()[0]
	moved := plans.Steps{{Migration: m.Name, Service: s.Ref()}: 2}
	if err := p.Apply(ctx, render(t, moved)); err != nil {
		t.Fatal(err)
	}
	second := lsRemote(t, srv.URL())
	if second == first {
		t.Fatal("a changed render was not pushed")
	}

	// Someone else pushes to the branch: the next publish builds on it.
	other := filepath.Join(work, "other")
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_AUTHOR_NAME=o", "GIT_AUTHOR_EMAIL=o@example.com", "GIT_COMMITTER_NAME=o", "GIT_COMMITTER_EMAIL=o@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git(work, "clone", "-q", "-b", "rendered", srv.URL(), other)
	if err := os.WriteFile(filepath.Join(other, "NOTES.md"), []byte("hand-written\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(other, "add", "-A")
	git(other, "commit", "-q", "-m", "notes")
	git(other, "push", "-q", "origin", "rendered")

	if err := p.Apply(ctx, render(t, plans.Steps{})); err != nil {
		t.Fatalf("publish on top of a moved branch: %v", err)
	}
	git(other, "pull", "-q", "origin", "rendered")
	for _, f := range []string{"NOTES.md", "onprem/manifests.yaml", "eks/kustomization.yaml"} {
		if _, err := os.Stat(filepath.Join(other, f)); err != nil {
			t.Errorf("the branch lacks %s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(other, "onprem", "manifests.yaml"))
	want, _ := os.ReadFile(filepath.Join(work, "clone", "onprem", "manifests.yaml"))
	if string(b) != string(want) || len(b) == 0 {
		t.Error("the pushed manifests differ from the render")
	}

	// A new publisher (ferry restarted, or a fresh work directory) takes
	// the branch as it is.
	p2, err := publish.New(ctx, srv.URL(), "rendered", filepath.Join(work, "clone2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := lsRemote(t, srv.URL())
	if err := p2.Apply(ctx, render(t, plans.Steps{})); err != nil {
		t.Fatal(err)
	}
	if got := lsRemote(t, srv.URL()); got != before {
		t.Errorf("a fresh publisher of an unchanged render pushed: %s -> %s", before, got)
	}
}
