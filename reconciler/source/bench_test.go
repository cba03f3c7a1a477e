package source_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ferry-dev/ferry/reconciler/source"
)

// BenchmarkNoopPoll measures a poll when nothing changed, against a local
// git http-backend: one reference listing, no pack. Budget: < 20 ms.
func BenchmarkNoopPoll(b *testing.B) {
	r := newRepo(b)
	c1 := r.commitPush("first", map[string]string{"plans/a.yaml": "a\n"})
	srv := newGitHTTP(b, r.root, "", "", false)
	s, err := source.New(source.Config{URL: srv.url(), Path: "plans"}, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pollAccept(b, s, c1)
	packs := srv.uploadPack.Load()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, changed, err := s.Poll(ctx); err != nil || changed {
			b.Fatalf("poll: changed %v, %v", changed, err)
		}
	}
	b.StopTimer()
	if srv.uploadPack.Load() != packs {
		b.Fatal("a no-op poll fetched a pack")
	}
}

// BenchmarkFetchNewCommit10k measures getting one new commit (one file
// changed) of a 10,000-file repository over http-backend: ferry (ls-remote,
// shallow fetch, history check, reading the plan tree into a snapshot)
// against the git CLI (`git fetch --depth 1` into a shallow clone, which
// does not read the tree). The git side reports the child's peak RSS.
func BenchmarkFetchNewCommit10k(b *testing.B) {
	r := newRepo(b)
	r.fastImport("many", manyFilesMap(manyFiles))
	srv := newGitHTTP(b, r.root, "", "", false)
	i := 0
	change := func() string {
		i++
		return r.fastImport(fmt.Sprint("change ", i), map[string]string{
			fmt.Sprintf("plans/d%02d/svc-%05d.yaml", i%100, i%manyFiles): fmt.Sprintf("service: changed\nweight: %d\n", i),
		})
	}

	b.Run("ferry", func(b *testing.B) {
		s, err := source.New(source.Config{URL: srv.url(), Path: "plans"}, b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		if snap, _, err := s.Poll(ctx); err != nil || s.Accept(snap.Revision) != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			want := change()
			b.StartTimer()
			snap, changed, err := s.Poll(ctx)
			if err != nil || !changed || snap.Revision != want {
				b.Fatalf("poll = %v, %v, %v", snap, changed, err)
			}
			if err := s.Accept(snap.Revision); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("git-cli", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "clone")
		env := gitEnv(b.TempDir())
		run(b, "", env, "git", "clone", "-q", "--bare", "--depth", "1", "--single-branch", "--branch", "main", srv.url(), dir)
		var maxRSS int64
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			want := change()
			b.StartTimer()
			cmd := exec.Command("git", "fetch", "-q", "--depth", "1", "origin", "+refs/heads/main:refs/heads/main")
			cmd.Dir, cmd.Env = dir, env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("git fetch: %v\n%s", err, out)
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > maxRSS {
				maxRSS = ru.Maxrss
			}
			b.StopTimer()
			if got := run(b, dir, env, "git", "rev-parse", "refs/heads/main"); got != want {
				b.Fatalf("fetched %s, want %s", got, want)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(maxRSS), "peak-RSS-KiB")
	})
}
