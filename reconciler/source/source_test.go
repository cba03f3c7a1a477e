package source_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/reconciler/source"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newSource(t testing.TB, cfg source.Config, stateDir string) *source.Source {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	s, err := source.New(cfg, stateDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// poll polls and fails the test on error.
func poll(t testing.TB, s *source.Source) (*source.Snapshot, bool) {
	t.Helper()
	snap, changed, err := s.Poll(context.Background())
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return snap, changed
}

// pollAccept polls, requires a new candidate with revision want, and accepts it.
func pollAccept(t testing.TB, s *source.Source, want string) *source.Snapshot {
	t.Helper()
	snap, changed := poll(t, s)
	if !changed || snap.Revision != want {
		t.Fatalf("poll = %s, changed %v; want new candidate %s", snap, changed, want)
	}
	if err := s.Accept(snap.Revision); err != nil {
		t.Fatal(err)
	}
	return snap
}

// files returns the snapshot's files and contents.
func files(t testing.TB, fsys fs.FS) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHTTPFirstFetchNoopAndNewCommit(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{
		"plans/a.yaml":     "a: 1\n",
		"plans/sub/b.yaml": "b: 1\n",
		"README.md":        "not a plan\n",
	})
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{URL: srv.url(), Ref: source.Ref{Branch: "main"}, Path: "plans"}, "")

	if s.LastGood() != nil {
		t.Fatal("LastGood before any accept")
	}
	snap := pollAccept(t, s, c1)
	want := map[string]string{"a.yaml": "a: 1\n", "sub/b.yaml": "b: 1\n"}
	if diff := cmp.Diff(want, files(t, snap.FS)); diff != "" {
		t.Errorf("snapshot files (-want +got):\n%s", diff)
	}
	if snap.Author != "Ada Author <ada@example.com>" || snap.Message != "first\n" || snap.Ref != "refs/heads/main" || snap.Time.IsZero() {
		t.Errorf("snapshot metadata = %q %q %q %v", snap.Author, snap.Message, snap.Ref, snap.Time)
	}
	if got := srv.uploadPack.Load(); got != 1 {
		t.Errorf("first fetch: %d upload-pack requests, want 1", got)
	}

	// No-op: one listing, no pack.
	lists, packs := srv.infoRefs.Load(), srv.uploadPack.Load()
	for range 3 {
		got, changed := poll(t, s)
		if changed || got.Revision != c1 {
			t.Fatalf("no-op poll = %s, changed %v", got, changed)
		}
	}
	if got := srv.uploadPack.Load() - packs; got != 0 {
		t.Errorf("no-op polls fetched %d packs, want 0", got)
	}
	if got := srv.infoRefs.Load() - lists; got != 3 {
		t.Errorf("no-op polls listed refs %d times, want 3", got)
	}

	c2 := r.commitPush("second", map[string]string{"plans/a.yaml": "a: 2\n", "plans/sub/b.yaml": ""})
	snap2 := pollAccept(t, s, c2)
	if diff := cmp.Diff(map[string]string{"a.yaml": "a: 2\n"}, files(t, snap2.FS)); diff != "" {
		t.Errorf("second snapshot (-want +got):\n%s", diff)
	}
	// The first snapshot is immutable.
	if diff := cmp.Diff(want, files(t, snap.FS)); diff != "" {
		t.Errorf("first snapshot changed (-want +got):\n%s", diff)
	}
	if got := s.LastGood().Revision; got != c2 {
		t.Errorf("LastGood = %s, want %s", got, c2)
	}
}

func TestCandidateOfferedUntilDecided(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "a\n"})
	s := newSource(t, source.Config{URL: r.bare}, "")
	for range 2 {
		snap, changed := poll(t, s)
		if !changed || snap.Revision != c1 {
			t.Fatalf("poll = %s, %v; want candidate %s", snap, changed, c1)
		}
	}
	if err := s.Accept("0000000000000000000000000000000000000000"); err == nil {
		t.Error("Accept of an unknown revision succeeded")
	}
}

func TestRefuseKeepsLastGood(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("good", map[string]string{"a.yaml": "a\n"})
	s := newSource(t, source.Config{URL: "file://" + r.bare, Ref: source.Ref{Branch: "main"}}, "")
	pollAccept(t, s, c1)

	c2 := r.commitPush("bad", map[string]string{"a.yaml": "broken\n"})
	snap, changed := poll(t, s)
	if !changed || snap.Revision != c2 {
		t.Fatalf("poll = %s, %v", snap, changed)
	}
	e1, e2 := errors.New("a.yaml:1: bad value"), errors.New("render: cluster x: boom")
	refusal := s.Refuse(c2, errors.Join(e1, e2))
	if refusal.Revision != c2 || len(refusal.Errs) != 2 {
		t.Fatalf("refusal = %#v", refusal)
	}
	for _, want := range []string{c2, e1.Error(), e2.Error()} {
		if !strings.Contains(refusal.Error(), want) {
			t.Errorf("refusal %q lacks %q", refusal, want)
		}
	}
	if got := s.LastGood().Revision; got != c1 {
		t.Errorf("LastGood = %s, want %s", got, c1)
	}
	// The refused head is not offered again.
	_, changed, err := s.Poll(context.Background())
	var re *source.RefusedError
	if changed || !errors.As(err, &re) || re.Revision != c2 || !source.NeedsPerson(err) {
		t.Errorf("poll at refused head: changed %v, err %v", changed, err)
	}
	if st := s.Status(); st.Refused == nil || st.Refused.Revision != c2 || st.LastGood.Revision != c1 {
		t.Errorf("status = %+v", st)
	}
	// A fix on top is accepted.
	c3 := r.commitPush("fix", map[string]string{"a.yaml": "fixed\n"})
	pollAccept(t, s, c3)
	if st := s.Status(); st.Refused != nil {
		t.Errorf("refusal still reported after accept: %v", st.Refused)
	}
}

func TestBranchDeleted(t *testing.T) {
	r := newRepo(t)
	r.commitPush("main", map[string]string{"a.yaml": "a\n"})
	r.git(r.work, "checkout", "-q", "-b", "feature")
	c1 := r.commit("feature", map[string]string{"a.yaml": "f\n"})
	r.push("feature")
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{URL: srv.url(), Ref: source.Ref{Branch: "feature"}}, "")
	pollAccept(t, s, c1)

	r.push(":feature")
	snap, changed, err := s.Poll(context.Background())
	if !errors.Is(err, source.ErrNotFound) || !source.NeedsPerson(err) || changed || snap != nil {
		t.Fatalf("poll after delete = %v, %v, %v; want ErrNotFound", snap, changed, err)
	}
	if !strings.Contains(err.Error(), "branch feature") {
		t.Errorf("error %q does not name the branch", err)
	}
	if got := s.LastGood().Revision; got != c1 {
		t.Errorf("LastGood = %s, want %s", got, c1)
	}
}

func TestForcePush(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowRewrite=%v", allow), func(t *testing.T) {
			r := newRepo(t)
			r.commitPush("base", map[string]string{"a.yaml": "base\n"})
			c1 := r.commitPush("applied", map[string]string{"a.yaml": "applied\n"})
			srv := newGitHTTP(t, r.root, "", "", false)
			s := newSource(t, source.Config{URL: srv.url(), AllowRewrite: allow}, "")
			pollAccept(t, s, c1)

			r.git(r.work, "reset", "-q", "--hard", "HEAD~1")
			c2 := r.commit("rewritten", map[string]string{"a.yaml": "rewritten\n"})
			r.push("+main")

			snap, changed, err := s.Poll(context.Background())
			if allow {
				if err != nil || !changed || snap.Revision != c2 {
					t.Fatalf("poll = %v, %v, %v; want candidate %s", snap, changed, err, c2)
				}
				return
			}
			if !errors.Is(err, source.ErrRewrite) || !source.NeedsPerson(err) {
				t.Fatalf("poll = %v, %v, %v; want ErrRewrite", snap, changed, err)
			}
			for _, want := range []string{c2, c1} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %s", err, want)
				}
			}
			if got := s.LastGood().Revision; got != c1 {
				t.Errorf("LastGood = %s, want %s", got, c1)
			}

			// After a restart, the check still knows the last applied commit.
			dir := t.TempDir()
			s2 := newSource(t, source.Config{URL: srv.url()}, dir)
			pollAccept(t, s2, c2) // a fresh state dir knows nothing
			s2.Close()
			r.git(r.work, "reset", "-q", "--hard", "HEAD~1")
			c3 := r.commit("rewritten again", map[string]string{"a.yaml": "again\n"})
			r.push("+main")
			s3 := newSource(t, source.Config{URL: srv.url()}, dir)
			if got := s3.LastGood(); got == nil || got.Revision != c2 {
				t.Fatalf("restored LastGood = %v, want %s", got, c2)
			}
			if diff := cmp.Diff(map[string]string{"a.yaml": "rewritten\n"}, files(t, s3.LastGood().FS)); diff != "" {
				t.Errorf("restored snapshot (-want +got):\n%s", diff)
			}
			if _, _, err := s3.Poll(context.Background()); !errors.Is(err, source.ErrRewrite) || !strings.Contains(err.Error(), c3) {
				t.Errorf("poll after restart = %v; want ErrRewrite for %s", err, c3)
			}
		})
	}
}

// A push of many commits at once is a descendant even though the fetch is
// shallow: the check deepens until it finds the last applied commit.
func TestManyCommitsPushedAtOnce(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("base", map[string]string{"a.yaml": "v0\n", "keep.yaml": "old\n"})
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{URL: srv.url()}, "")
	pollAccept(t, s, c1)

	for i := 1; i <= 40; i++ {
		r.commit(fmt.Sprint("c", i), map[string]string{"a.yaml": fmt.Sprintf("v%d\n", i), "keep.yaml": fmt.Sprintf("k%d\n", i)})
	}
	// Restore a file to a blob last seen in the first commit: the shallow
	// fetch must still bring it.
	last := r.commit("revert keep", map[string]string{"keep.yaml": "old\n"})
	r.push("main")
	snap := pollAccept(t, s, last)
	if diff := cmp.Diff(map[string]string{"a.yaml": "v40\n", "keep.yaml": "old\n"}, files(t, snap.FS)); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func TestRevertToOldBlob(t *testing.T) {
	r := newRepo(t)
	r.commitPush("v1", map[string]string{"a.yaml": "one\n", "b.yaml": "b\n"})
	r.commitPush("v2", map[string]string{"a.yaml": "two\n"})
	c3 := r.commitPush("v3", map[string]string{"b.yaml": "b3\n"})
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{URL: srv.url()}, "")
	pollAccept(t, s, c3) // shallow: only v3 is here
	c4 := r.commitPush("back to one", map[string]string{"a.yaml": "one\n"})
	snap := pollAccept(t, s, c4)
	if diff := cmp.Diff(map[string]string{"a.yaml": "one\n", "b.yaml": "b3\n"}, files(t, snap.FS)); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func TestGitDaemon(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "a\n"})
	url := startGitDaemon(t, r)
	s := newSource(t, source.Config{URL: url, Ref: source.Ref{Branch: "main"}}, "")
	pollAccept(t, s, c1)
	if _, changed := poll(t, s); changed {
		t.Error("no-op poll reported a change")
	}
	fetches := s.Status().Fetches
	c2 := r.commitPush("second", map[string]string{"a.yaml": "b\n"})
	snap := pollAccept(t, s, c2)
	if got := files(t, snap.FS)["a.yaml"]; got != "b\n" {
		t.Errorf("a.yaml = %q", got)
	}
	if got := s.Status().Fetches - fetches; got != 1 {
		t.Errorf("%d fetches for one new commit, want 1", got)
	}
}

func TestTagAndPinnedCommit(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("one", map[string]string{"a.yaml": "1\n"})
	r.git(r.work, "tag", "-a", "-m", "release 1", "v1")
	r.git(r.work, "push", "-q", "origin", "v1")
	c2 := r.commitPush("two", map[string]string{"a.yaml": "2\n"})
	srv := newGitHTTP(t, r.root, "", "", false)

	t.Run("annotated tag", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Ref: source.Ref{Tag: "v1"}}, "")
		snap := pollAccept(t, s, c1)
		if snap.Ref != "refs/tags/v1" || files(t, snap.FS)["a.yaml"] != "1\n" {
			t.Errorf("tag snapshot = %s %v", snap, files(t, snap.FS))
		}
		// Moving the tag forward is picked up.
		r.git(r.work, "tag", "-f", "-a", "-m", "release 1 again", "v1", c2)
		r.git(r.work, "push", "-q", "-f", "origin", "v1")
		pollAccept(t, s, c2)
	})
	t.Run("pinned commit", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Ref: source.Ref{Commit: c1}}, "")
		pollAccept(t, s, c1)
		lists := srv.infoRefs.Load()
		if _, changed := poll(t, s); changed {
			t.Error("pinned commit changed")
		}
		if srv.infoRefs.Load() != lists {
			t.Error("no-op poll of a pinned commit asked the server")
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url()}, "")
		if snap := pollAccept(t, s, c2); snap.Ref != "refs/heads/main" {
			t.Errorf("HEAD resolved to %s", snap.Ref)
		}
	})
	t.Run("missing tag", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.url(), Ref: source.Ref{Tag: "nope"}}, "")
		if _, _, err := s.Poll(context.Background()); !errors.Is(err, source.ErrNotFound) {
			t.Errorf("poll = %v, want ErrNotFound", err)
		}
	})
}

func TestServerDownThenBack(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "1\n"})
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{
		URL: srv.url(), Interval: time.Hour, // only backoff and triggers poll
		BackoffMin: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	}, "")
	pollAccept(t, s, c1)

	srv.stop()
	_, _, err := s.Poll(context.Background())
	if err == nil || source.NeedsPerson(err) {
		t.Fatalf("poll with server down = %v; want an error to retry", err)
	}

	applied := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- s.Run(ctx, func(_ context.Context, snap *source.Snapshot) error {
			applied <- snap.Revision
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	time.Sleep(300 * time.Millisecond) // several failed polls, backing off
	st := s.Status()
	if st.LastError == nil || st.LastGood.Revision != c1 {
		t.Fatalf("status while down: err %v, last good %v", st.LastError, st.LastGood)
	}
	c2 := r.commitPush("second", map[string]string{"a.yaml": "2\n"})
	srv.restart()
	select {
	case got := <-applied:
		if got != c2 {
			t.Errorf("applied %s, want %s", got, c2)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not recover after the server came back")
	}
	waitFor(t, func() bool { return s.LastGood().Revision == c2 })
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunRefusesAndRetries(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, source.Config{URL: r.bare, Interval: time.Hour, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}, "")
	calls := make(chan string, 100)
	attempts := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- s.Run(ctx, func(_ context.Context, snap *source.Snapshot) error {
			calls <- snap.Revision
			if snap.Revision == c1 {
				attempts++
				if attempts < 3 {
					return source.RetryLater(errors.New("cluster unreachable"))
				}
				return nil
			}
			return errors.New("render: invalid")
		})
	}()
	defer func() { cancel(); <-done }()
	for i := 0; i < 3; i++ {
		if got := <-calls; got != c1 {
			t.Fatalf("call %d with %s", i, got)
		}
	}
	waitFor(t, func() bool { lg := s.LastGood(); return lg != nil && lg.Revision == c1 })

	c2 := r.commitPush("bad", map[string]string{"a.yaml": "2\n"})
	s.Trigger()
	if got := <-calls; got != c2 {
		t.Fatalf("applied %s, want %s", got, c2)
	}
	waitFor(t, func() bool { st := s.Status(); return st.Refused != nil && st.Refused.Revision == c2 })
	s.Trigger()
	time.Sleep(50 * time.Millisecond)
	select {
	case got := <-calls:
		t.Errorf("refused commit %s offered again", got)
	default:
	}
	if got := s.LastGood().Revision; got != c1 {
		t.Errorf("LastGood = %s, want %s", got, c1)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, []byte("s3cret-value"))
	tests := []struct {
		name string
		cfg  source.Config
		want string
	}{
		{"no url", source.Config{}, "url is empty"},
		{"password in url", source.Config{URL: "https://u:s3cret-value@example.com/r.git"}, "must not contain a password"},
		{"two refs", source.Config{URL: "https://example.com/r.git", Ref: source.Ref{Branch: "a", Tag: "b"}}, "at most one"},
		{"short commit", source.Config{URL: "https://example.com/r.git", Ref: source.Ref{Commit: "abc123"}}, "full 40-hex"},
		{"escaping path", source.Config{URL: "https://example.com/r.git", Path: "../x"}, "inside the repository"},
		{"ssh without known hosts", source.Config{URL: "ssh://git@example.com/r.git", Auth: source.Auth{SSHKey: source.Secret{File: pw}}}, "knownHostsFile"},
		{"creds over http", source.Config{URL: "http://example.com/r.git", Auth: source.Auth{Password: source.Secret{File: pw}}}, "plain http"},
		{"missing secret env", source.Config{URL: "https://example.com/r.git", Auth: source.Auth{Password: source.Secret{Env: "FERRY_TEST_UNSET_VAR"}}}, "FERRY_TEST_UNSET_VAR is not set"},
		{"verify without keys", source.Config{URL: "https://example.com/r.git", Verify: source.Verify{Mode: source.VerifyHead}}, "trusted keys"},
		{"bad verify mode", source.Config{URL: "https://example.com/r.git", Verify: source.Verify{Mode: "all"}}, "unknown verify mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := source.New(tt.cfg, dir, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestStateDirLayout(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "1\n"})
	dir := t.TempDir()
	s := newSource(t, source.Config{URL: r.bare}, dir)
	pollAccept(t, s, c1)
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil || !strings.Contains(string(b), c1) {
		t.Fatalf("state.json = %s, %v", b, err)
	}
	// The state directory's repository is readable by plain git.
	got := run(t, dir, gitEnv(t.TempDir()), "git", "--git-dir", filepath.Join(dir, "repo.git"), "rev-parse", "refs/ferry/last-good")
	if got != c1 {
		t.Errorf("refs/ferry/last-good = %s, want %s", got, c1)
	}
}
