package source_test

// Real git on loopback: repositories made with the git CLI and served by
// git http-backend (CGI behind net/http), git daemon, and an in-process SSH
// server (golang.org/x/crypto/ssh) running the real git-upload-pack.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const httpBackend = "/usr/lib/git-core/git-http-backend"

// gitEnv isolates git from the machine's and the user's configuration.
func gitEnv(home string) []string {
	return append(os.Environ(),
		"HOME="+home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+filepath.Join(home, ".gitconfig"),
		"GIT_AUTHOR_NAME=Ada Author", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada Author", "GIT_COMMITTER_EMAIL=ada@example.com",
		"GIT_TERMINAL_PROMPT=0",
	)
}

func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// repo is a bare repository under root (what servers serve) and a work
// clone to commit and push from.
type repo struct {
	t     testing.TB
	root  string // served directory
	bare  string // root/plans.git
	work  string
	home  string
	extra []string // extra env, e.g. GNUPGHOME
}

func newRepo(t testing.TB) *repo {
	t.Helper()
	d := t.TempDir()
	r := &repo{t: t, root: filepath.Join(d, "srv"), work: filepath.Join(d, "work"), home: filepath.Join(d, "home")}
	r.bare = filepath.Join(r.root, "plans.git")
	for _, p := range []string{r.root, r.work, r.home} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.git(r.root, "init", "-q", "--bare", "-b", "main", "plans.git")
	r.git(r.bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	r.git(r.bare, "config", "http.receivepack", "false")
	r.git(r.work, "init", "-q", "-b", "main")
	r.git(r.work, "remote", "add", "origin", r.bare)
	r.git(r.work, "config", "commit.gpgsign", "false")
	return r
}

func (r *repo) env() []string { return append(gitEnv(r.home), r.extra...) }

func (r *repo) git(dir string, args ...string) string {
	r.t.Helper()
	return run(r.t, dir, r.env(), "git", args...)
}

// write writes files (path → content) into the work tree; an empty content
// deletes the file.
func (r *repo) write(files map[string]string) {
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
}

// commit commits everything in the work tree and returns the SHA.
func (r *repo) commit(msg string, files map[string]string, gitArgs ...string) string {
	r.t.Helper()
	r.write(files)
	r.git(r.work, "add", "-A")
	r.git(r.work, append([]string{"commit", "-q", "--allow-empty", "-m", msg}, gitArgs...)...)
	return r.git(r.work, "rev-parse", "HEAD")
}

func (r *repo) push(args ...string) {
	r.t.Helper()
	r.git(r.work, append([]string{"push", "-q", "origin"}, args...)...)
}

// commitPush commits and pushes main.
func (r *repo) commitPush(msg string, files map[string]string) string {
	r.t.Helper()
	h := r.commit(msg, files)
	r.push("main")
	return h
}

// gitHTTP serves root with git http-backend, counting requests.
type gitHTTP struct {
	t          testing.TB
	addr       string
	srv        *httptest.Server
	handler    http.Handler
	tls        bool
	infoRefs   atomic.Int64 // GET info/refs (reference listings)
	uploadPack atomic.Int64 // POST git-upload-pack (object transfers)
	packBytes  atomic.Int64 // bytes sent in upload-pack responses
	user, pass string
}

func newGitHTTP(t testing.TB, root, user, pass string, useTLS bool) *gitHTTP {
	t.Helper()
	g := &gitHTTP{t: t, tls: useTLS, user: user, pass: pass}
	backend := &cgi.Handler{
		Path: httpBackend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	g.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != g.user || p != g.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
			g.infoRefs.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			g.uploadPack.Add(1)
			w = &countingWriter{ResponseWriter: w, n: &g.packBytes}
		}
		backend.ServeHTTP(w, r)
	})
	g.start("127.0.0.1:0")
	t.Cleanup(func() { g.srv.Close() })
	return g
}

func (g *gitHTTP) start(addr string) {
	g.t.Helper()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after stop
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		g.t.Fatal(err)
	}
	g.srv = httptest.NewUnstartedServer(g.handler)
	g.srv.Listener = l
	if g.tls {
		g.srv.StartTLS()
	} else {
		g.srv.Start()
	}
	g.addr = l.Addr().String()
}

// stop closes the listener: clients get "connection refused".
func (g *gitHTTP) stop() { g.srv.Close() }

// restart serves again on the same address (and the same certificate).
func (g *gitHTTP) restart() {
	g.t.Helper()
	if g.tls {
		g.t.Fatal("restart of a TLS server is not supported")
	}
	g.start(g.addr)
}

func (g *gitHTTP) url() string { return g.srv.URL + "/plans.git" }

// caFile writes the test server's certificate for Auth.CAFile.
func (g *gitHTTP) caFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startGitDaemon serves root with `git daemon` and returns the git:// URL.
func startGitDaemon(t testing.TB, r *repo) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("git", "daemon", "--listen=127.0.0.1", "--port="+strconv.Itoa(port),
		"--export-all", "--reuseaddr", "--base-path="+r.root, r.root)
	cmd.Env = r.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// `git daemon` runs git-daemon and that forks a child per connection:
	// kill the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("git daemon did not listen on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "git://" + addr + "/plans.git"
}

// sshServer is an SSH server on loopback that runs the real git-upload-pack
// for "exec" requests, authenticating clients by public key.
type sshServer struct {
	addr    string
	hostKey ssh.Signer
	execs   atomic.Int64
}

func newSSHKey(t testing.TB) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

func startSSHServer(t testing.TB, root string, clientKey ssh.PublicKey) *sshServer {
	t.Helper()
	hostKey, _ := newSSHKey(t)
	s := &sshServer{hostKey: hostKey}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c, cfg, root)
			}()
		}
	}()
	return s
}

func (s *sshServer) serve(c net.Conn, cfg *ssh.ServerConfig, root string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range chReqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Command string }
				if ssh.Unmarshal(req.Payload, &p) != nil {
					req.Reply(false, nil)
					return
				}
				// "git-upload-pack '/plans.git'"
				f := strings.Fields(p.Command)
				if len(f) != 2 || f[0] != "git-upload-pack" {
					req.Reply(false, nil)
					return
				}
				req.Reply(true, nil)
				s.execs.Add(1)
				path := filepath.Join(root, strings.Trim(f[1], "'/"))
				cmd := exec.Command("git-upload-pack", path)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := 0
				if err := cmd.Run(); err != nil {
					status = 1
				}
				b := make([]byte, 4)
				binary.BigEndian.PutUint32(b, uint32(status))
				ch.SendRequest("exit-status", false, b)
				return
			}
		}()
	}
}

// knownHosts writes a known_hosts file trusting key for the server address.
func (s *sshServer) knownHosts(t testing.TB, key ssh.PublicKey) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.addr)
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(key))
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *sshServer) url() string { return "ssh://git@" + s.addr + "/plans.git" }

func writeFile(t testing.TB, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func marshalKey(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }

// fastImport commits files (path → content; "" deletes) onto main of the
// bare repository with git fast-import, which writes one pack directly:
// much faster than a work tree for thousands of files. The work clone does
// not see these commits.
func (r *repo) fastImport(msg string, files map[string]string) string {
	r.t.Helper()
	var b bytes.Buffer
	hasMain := exec.Command("git", "--git-dir", r.bare, "rev-parse", "-q", "--verify", "refs/heads/main").Run() == nil
	fmt.Fprintf(&b, "commit refs/heads/main\ncommitter Ada Author <ada@example.com> %d +0000\ndata %d\n%s\n",
		time.Now().Unix(), len(msg), msg)
	if hasMain {
		b.WriteString("from refs/heads/main^0\n")
	}
	for p, c := range files {
		if c == "" {
			fmt.Fprintf(&b, "D %s\n", p)
			continue
		}
		fmt.Fprintf(&b, "M 100644 inline %s\ndata %d\n%s\n", p, len(c), c)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.bare
	cmd.Env = append(r.env(), "GIT_DIR="+r.bare)
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return run(r.t, r.bare, r.env(), "git", "rev-parse", "refs/heads/main")
}

// manyFilesMap returns n plan files in 100 directories.
func manyFilesMap(n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("plans/d%02d/svc-%05d.yaml", i%100, i)] = fmt.Sprintf("service: svc-%05d\nweight: %d\n", i, i%101)
	}
	return m
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}
