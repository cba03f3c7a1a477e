package source_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ferry-dev/ferry/reconciler/source"
)

func (r *repo) symlink(target, name string) {
	r.t.Helper()
	p := filepath.Join(r.work, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatal(err)
	}
}

func TestSnapshotFS(t *testing.T) {
	r := newRepo(t)
	r.write(map[string]string{
		"plans/a.yaml":         "a\n",
		"plans/dir/x.yaml":     "x\n",
		"plans/dir/deep/y.cue": "y: 1\n",
		"outside.yaml":         "secret\n",
	})
	r.symlink("a.yaml", "plans/link.yaml")
	r.symlink("../a.yaml", "plans/dir/up.yaml")
	r.symlink("link.yaml", "plans/chain.yaml")
	c1 := r.commitPush("tree", nil)
	s := newSource(t, source.Config{URL: r.bare, Path: "plans/"}, "")
	snap := pollAccept(t, s, c1)

	if err := fstest.TestFS(snap.FS, "a.yaml", "link.yaml", "chain.yaml", "dir/x.yaml", "dir/up.yaml", "dir/deep/y.cue"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"link.yaml", "chain.yaml", "dir/up.yaml"} {
		if b, _ := fs.ReadFile(snap.FS, p); string(b) != "a\n" {
			t.Errorf("%s = %q, want the target's content", p, b)
		}
		if st, _ := fs.Stat(snap.FS, p); !st.Mode().IsRegular() || st.Mode()&0o222 != 0 {
			t.Errorf("%s mode = %v, want read-only regular", p, st.Mode())
		}
	}
	if _, err := fs.Stat(snap.FS, "../outside.yaml"); err == nil {
		t.Error("path outside the plan directory opened")
	}
	// ReadFile returns a copy: the snapshot cannot be changed through it.
	b, _ := fs.ReadFile(snap.FS, "a.yaml")
	b[0] = 'X'
	if b2, _ := fs.ReadFile(snap.FS, "a.yaml"); string(b2) != "a\n" {
		t.Errorf("snapshot changed through ReadFile: %q", b2)
	}
	if st, _ := fs.Stat(snap.FS, "a.yaml"); !st.ModTime().Equal(snap.Time) {
		t.Errorf("mod time = %v, want commit time %v", st.ModTime(), snap.Time)
	}
}

func TestSnapshotRefusesUnsafeTrees(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("good", map[string]string{"plans/a.yaml": "a\n", "secret.txt": "s\n"})
	s := newSource(t, source.Config{URL: r.bare, Path: "plans"}, "")
	pollAccept(t, s, c1)

	r.symlink("../secret.txt", "plans/escape.yaml")
	r.symlink("/etc/passwd", "plans/abs.yaml")
	r.symlink("dir", "plans/dirlink")
	r.symlink("nope.yaml", "plans/dangling.yaml")
	r.symlink("loop2", "plans/loop1")
	r.symlink("loop1", "plans/loop2")
	r.write(map[string]string{"plans/dir/x.yaml": "x\n", "plans/huge.yaml": strings.Repeat("y", source.MaxFileSize+1)})
	r.git(r.work, "add", "-A")
	r.git(r.work, "update-index", "--add", "--cacheinfo", "160000,"+c1+",plans/module")
	r.git(r.work, "commit", "-q", "-m", "unsafe")
	c2 := r.git(r.work, "rev-parse", "HEAD")
	r.push("main")

	_, _, err := s.Poll(context.Background())
	var re *source.RefusedError
	if !errors.As(err, &re) || !errors.Is(err, source.ErrInvalid) || re.Revision != c2 {
		t.Fatalf("poll = %v; want an ErrInvalid refusal of %s", err, c2)
	}
	for _, want := range []string{
		`escape.yaml: symlink "../secret.txt" escapes the plan directory`,
		`abs.yaml: symlink to absolute path "/etc/passwd"`,
		"dirlink: symlinks to directories are not supported",
		`dangling.yaml: symlink target "nope.yaml" does not exist`,
		"loop1: too many levels of symbolic links",
		"huge.yaml: file is 4194305 bytes, over the limit of 4194304",
		"module: submodules are not supported",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q", want)
		}
	}
	if len(re.Errs) != 8 { // loop2 as well as loop1
		t.Errorf("%d reasons, want 8:\n%v", len(re.Errs), re)
	}
	if got := s.LastGood().Revision; got != c1 {
		t.Errorf("LastGood = %s, want %s", got, c1)
	}
}

func TestSnapshotMissingPath(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("no plans dir", map[string]string{"a.yaml": "a\n"})
	s := newSource(t, source.Config{URL: r.bare, Path: "plans"}, "")
	_, _, err := s.Poll(context.Background())
	if !errors.Is(err, source.ErrInvalid) || !strings.Contains(err.Error(), `directory "plans" not found`) || !strings.Contains(err.Error(), c1) {
		t.Fatalf("poll = %v", err)
	}
}

const manyFiles = 10000

func TestTenThousandFiles(t *testing.T) {
	r := newRepo(t)
	c1 := r.fastImport("many", manyFilesMap(manyFiles))
	srv := newGitHTTP(t, r.root, "", "", false)
	dir := t.TempDir()
	s := newSource(t, source.Config{URL: srv.url(), Path: "plans"}, dir)

	start := time.Now()
	snap := pollAccept(t, s, c1)
	t.Logf("first fetch and read of %d files: %v, %d bytes", manyFiles, time.Since(start), srv.packBytes.Load())
	n := 0
	fs.WalkDir(snap.FS, ".", func(_ string, d fs.DirEntry, _ error) error {
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if n != manyFiles {
		t.Fatalf("%d files in snapshot, want %d", n, manyFiles)
	}

	c2 := r.fastImport("one change", map[string]string{"plans/d07/svc-00007.yaml": "service: svc-00007\nweight: 100\n"})
	sent := srv.packBytes.Load()
	start = time.Now()
	snap = pollAccept(t, s, c2)
	sent = srv.packBytes.Load() - sent
	t.Logf("incremental fetch and read: %v, %d bytes", time.Since(start), sent)
	// A thin pack: the commit, the trees on the path and one blob, not the
	// 10,000 files again.
	if sent > 16<<10 {
		t.Errorf("incremental fetch of one changed file sent %d bytes", sent)
	}
	if b, _ := fs.ReadFile(snap.FS, "d07/svc-00007.yaml"); !strings.Contains(string(b), "weight: 100") {
		t.Errorf("changed file = %q", b)
	}

	// A restart reads the last good commit from disk without refetching.
	s.Close()
	packs := srv.uploadPack.Load()
	s2 := newSource(t, source.Config{URL: srv.url(), Path: "plans"}, dir)
	if got, changed := poll(t, s2); changed || got.Revision != c2 {
		t.Fatalf("poll after restart = %s, %v", got, changed)
	}
	if got := srv.uploadPack.Load() - packs; got != 0 {
		t.Errorf("restart fetched %d packs, want 0", got)
	}
}

// Unchanged directories are shared between snapshots; a symlink's target
// may change outside its directory, so directories with links never are.
func TestSnapshotSharesUnchangedDirs(t *testing.T) {
	r := newRepo(t)
	r.write(map[string]string{"p/a/x.yaml": "a\n", "p/b/x.yaml": "b1\n"})
	r.symlink("../b/x.yaml", "p/c/l.yaml")
	c1 := r.commitPush("one", nil)
	s := newSource(t, source.Config{URL: r.bare, Path: "p"}, "")
	snap1 := pollAccept(t, s, c1)
	c2 := r.commitPush("two", map[string]string{"p/b/x.yaml": "b2\n", "p/a/new.yaml": "n\n"})
	snap2 := pollAccept(t, s, c2)
	c3 := r.commitPush("three", map[string]string{"p/b/x.yaml": "b3\n"})
	snap3 := pollAccept(t, s, c3)
	for _, tc := range []struct {
		snap *source.Snapshot
		want map[string]string
	}{
		{snap1, map[string]string{"a/x.yaml": "a\n", "b/x.yaml": "b1\n", "c/l.yaml": "b1\n"}},
		{snap2, map[string]string{"a/x.yaml": "a\n", "a/new.yaml": "n\n", "b/x.yaml": "b2\n", "c/l.yaml": "b2\n"}},
		{snap3, map[string]string{"a/x.yaml": "a\n", "a/new.yaml": "n\n", "b/x.yaml": "b3\n", "c/l.yaml": "b3\n"}},
	} {
		if diff := cmp.Diff(tc.want, files(t, tc.snap.FS)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.snap.Message, diff)
		}
		if err := fstest.TestFS(tc.snap.FS, "a/x.yaml", "c/l.yaml"); err != nil {
			t.Error(err)
		}
	}
}
