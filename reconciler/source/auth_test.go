package source_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/reconciler/source"
)

const password = "hunter2-Zq8wX-secret"

func TestHTTPSBasicAuth(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "a\n"})
	srv := newGitHTTP(t, r.root, "ferry", password, true)
	ca := srv.caFile(t)

	t.Run("password file", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Auth: source.Auth{
			Username: "ferry", Password: source.Secret{File: writeFile(t, []byte(password+"\n"))}, CAFile: ca,
		}}, "")
		pollAccept(t, s, c1)
	})
	t.Run("token in environment", func(t *testing.T) {
		t.Setenv("FERRY_TEST_GIT_TOKEN", password)
		s := newSource(t, source.Config{URL: srv.url(), Auth: source.Auth{
			Username: "ferry", Password: source.Secret{Env: "FERRY_TEST_GIT_TOKEN"}, CAFile: ca,
		}}, "")
		pollAccept(t, s, c1)
	})
	t.Run("wrong password", func(t *testing.T) {
		wrong := "wrong-" + password
		s := newSource(t, source.Config{URL: srv.url(), Auth: source.Auth{
			Username: "ferry", Password: source.Secret{File: writeFile(t, []byte(wrong))}, CAFile: ca,
		}}, "")
		_, _, err := s.Poll(context.Background())
		if !errors.Is(err, source.ErrAuth) || !source.NeedsPerson(err) {
			t.Fatalf("poll = %v, want ErrAuth", err)
		}
		for _, secret := range []string{wrong, password} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains a credential", err)
			}
		}
		if st := s.Status(); st.LastError == nil || strings.Contains(st.LastError.Error(), wrong) {
			t.Errorf("status error = %v", st.LastError)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Auth: source.Auth{CAFile: ca}}, "")
		if _, _, err := s.Poll(context.Background()); !errors.Is(err, source.ErrAuth) {
			t.Fatalf("poll = %v, want ErrAuth", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Auth: source.Auth{
			Username: "ferry", Password: source.Secret{File: writeFile(t, []byte(password))},
		}}, "")
		_, _, err := s.Poll(context.Background())
		if err == nil || strings.Contains(err.Error(), password) {
			t.Fatalf("poll = %v, want a TLS error without the password", err)
		}
	})
}

// The redaction is a second line of defence: a server that echoes the
// credential back in its error text must not get it into our errors.
func TestSecretsRedactedFromServerErrors(t *testing.T) {
	r := newRepo(t)
	r.commitPush("first", map[string]string{"a.yaml": "a\n"})
	s := newSource(t, source.Config{
		// A repository path containing the secret, as a stand-in for any
		// message that repeats it.
		URL:  "https://127.0.0.1:1/" + password + ".git",
		Auth: source.Auth{Password: source.Secret{File: writeFile(t, []byte(password))}},
	}, "")
	_, _, err := s.Poll(context.Background())
	if err == nil || strings.Contains(err.Error(), password) {
		t.Fatalf("poll = %v; want an error without the secret", err)
	}
	if !strings.Contains(err.Error(), "***") {
		t.Errorf("error %q: want the secret replaced by ***", err)
	}
}

func TestSSH(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"plans/a.yaml": "a\n"})
	client, clientPEM := newSSHKey(t)
	srv := startSSHServer(t, r.root, client.PublicKey())
	keyFile := writeFile(t, clientPEM)
	cfg := func(knownHosts, key string) source.Config {
		return source.Config{URL: srv.url(), Path: "plans", Auth: source.Auth{
			SSHKey: source.Secret{File: key}, KnownHostsFile: knownHosts,
		}}
	}

	t.Run("trusted host", func(t *testing.T) {
		s := newSource(t, cfg(srv.knownHosts(t, srv.hostKey.PublicKey()), keyFile), "")
		snap := pollAccept(t, s, c1)
		if files(t, snap.FS)["a.yaml"] != "a\n" {
			t.Errorf("files = %v", files(t, snap.FS))
		}
		execs := srv.execs.Load()
		if _, changed := poll(t, s); changed {
			t.Error("no-op poll changed")
		}
		if got := srv.execs.Load() - execs; got != 1 {
			t.Errorf("no-op poll ran %d upload-packs, want 1 (listing only)", got)
		}
	})
	t.Run("unknown host key", func(t *testing.T) {
		other, _ := newSSHKey(t)
		s := newSource(t, cfg(srv.knownHosts(t, other.PublicKey()), keyFile), "")
		execs := srv.execs.Load()
		_, _, err := s.Poll(context.Background())
		if !errors.Is(err, source.ErrHostKey) || !source.NeedsPerson(err) {
			t.Fatalf("poll = %v, want ErrHostKey", err)
		}
		if srv.execs.Load() != execs {
			t.Error("a command ran on a server whose host key was refused")
		}
	})
	t.Run("host not in known_hosts", func(t *testing.T) {
		kh := writeFile(t, []byte("[127.0.0.1]:1 "+strings.TrimSpace(string(marshalKey(srv.hostKey.PublicKey())))+"\n"))
		s := newSource(t, cfg(kh, keyFile), "")
		if _, _, err := s.Poll(context.Background()); !errors.Is(err, source.ErrHostKey) {
			t.Fatalf("poll = %v, want ErrHostKey", err)
		}
	})
	t.Run("wrong client key", func(t *testing.T) {
		_, otherPEM := newSSHKey(t)
		s := newSource(t, cfg(srv.knownHosts(t, srv.hostKey.PublicKey()), writeFile(t, otherPEM)), "")
		_, _, err := s.Poll(context.Background())
		if !errors.Is(err, source.ErrAuth) {
			t.Fatalf("poll = %v, want ErrAuth", err)
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error %q shows key material", err)
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run logs failures; the credential must not be in the log either.
func TestCredentialsNotLogged(t *testing.T) {
	r := newRepo(t)
	r.commitPush("first", map[string]string{"a.yaml": "a\n"})
	srv := newGitHTTP(t, r.root, "ferry", password, true)
	wrong := "wrong-" + password
	var logs syncBuffer
	s, err := source.New(source.Config{URL: srv.url(), Interval: 10 * time.Millisecond, Auth: source.Auth{
		Username: "ferry", Password: source.Secret{File: writeFile(t, []byte(wrong))}, CAFile: srv.caFile(t),
	}}, t.TempDir(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s.Run(ctx, func(context.Context, *source.Snapshot) error { return nil })
	out := logs.String()
	if !strings.Contains(out, "authentication failed") {
		t.Errorf("log does not report the failure:\n%s", out)
	}
	if strings.Contains(out, wrong) || strings.Contains(out, password) {
		t.Errorf("log contains a credential:\n%s", out)
	}
	if n := strings.Count(out, "authentication failed"); n != 1 {
		t.Errorf("a standing failure was logged %d times, want once", n)
	}
}
