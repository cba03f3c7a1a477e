// Package gitserver serves real Git repositories over HTTP for tests: a bare
// repository under a temporary root, a work clone to commit and push from,
// and `git http-backend` (the CGI program that ships with git) behind
// net/http on loopback. The server can be stopped and restarted on the same
// address to stand for an outage.
//
// It is test support: it takes a testing.TB and fails the test when git is
// missing or a command fails.
package gitserver

import (
	"bytes"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Backend is where Debian's git package installs git http-backend.
const Backend = "/usr/lib/git-core/git-http-backend"

// Repo is a bare repository plans.git served by the server, and a work
// clone of it.
type Repo struct {
	t    testing.TB
	root string
	bare string
	work string
	home string

	mu   sync.Mutex
	srv  *httptest.Server
	addr string
}

// Start makes an empty repository (branch main) and serves it.
func Start(t testing.TB) *Repo {
	t.Helper()
	if _, err := os.Stat(Backend); err != nil {
		t.Fatalf("git http-backend not found at %s: install git (apt-get install -y git): %v", Backend, err)
	}
	d := t.TempDir()
	r := &Repo{t: t, root: filepath.Join(d, "srv"), work: filepath.Join(d, "work"), home: filepath.Join(d, "home")}
	r.bare = filepath.Join(r.root, "plans.git")
	for _, p := range []string{r.root, r.work, r.home} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.Git(r.root, "init", "-q", "--bare", "-b", "main", "plans.git")
	r.Git(r.work, "init", "-q", "-b", "main")
	r.Git(r.work, "remote", "add", "origin", r.bare)
	r.Git(r.work, "config", "commit.gpgsign", "false")
	r.listen("127.0.0.1:0")
	t.Cleanup(r.Stop)
	return r
}

func (r *Repo) env() []string {
	return append(os.Environ(),
		"HOME="+r.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(r.home, ".gitconfig"),
		"GIT_AUTHOR_NAME=Ada Author", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada Author", "GIT_COMMITTER_EMAIL=ada@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// Git runs git in dir and returns its trimmed output.
func (r *Repo) Git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = r.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("git %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// AllowPush lets clients push over HTTP (git http-backend refuses
// anonymous pushes by default).
func (r *Repo) AllowPush() {
	r.t.Helper()
	r.Git(r.bare, "config", "http.receivepack", "true")
}

// Work returns the work clone's directory.
func (r *Repo) Work() string { return r.work }

// Commit writes files (path → content; empty content deletes), commits
// everything and returns the commit's SHA. It does not push.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for p, c := range files {
		full := filepath.Join(r.work, p)
		if c == "" {
			if err := os.Remove(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.Git(r.work, "add", "-A")
	r.Git(r.work, "commit", "-q", "--allow-empty", "-m", msg)
	return r.Git(r.work, "rev-parse", "HEAD")
}

// Push pushes main (with force when force is true: a rewritten history).
func (r *Repo) Push(force bool) {
	r.t.Helper()
	args := []string{"push", "-q", "origin", "main"}
	if force {
		args = append(args, "--force")
	}
	r.Git(r.work, args...)
}

// CommitPush commits and pushes main.
func (r *Repo) CommitPush(msg string, files map[string]string) string {
	r.t.Helper()
	h := r.Commit(msg, files)
	r.Push(false)
	return h
}

// URL is the repository's HTTP URL.
func (r *Repo) URL() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "http://" + r.addr + "/plans.git"
}

func (r *Repo) listen(addr string) {
	r.t.Helper()
	var l net.Listener
	var err error
	for range 100 { // the port may linger briefly after Stop
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("git server: listen %s: %v", addr, err)
	}
	backend := &cgi.Handler{
		Path: Backend,
		Env:  []string{"GIT_PROJECT_ROOT=" + r.root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	srv := httptest.NewUnstartedServer(http.Handler(backend))
	srv.Listener = l
	srv.Start()
	r.mu.Lock()
	r.srv, r.addr = srv, l.Addr().String()
	r.mu.Unlock()
}

// Stop closes the server: clients get "connection refused".
func (r *Repo) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart serves again on the same address.
func (r *Repo) Restart() {
	r.t.Helper()
	r.Stop()
	r.mu.Lock()
	addr := r.addr
	r.mu.Unlock()
	r.listen(addr)
}
