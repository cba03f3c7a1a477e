package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Limits on what a snapshot holds in memory. A plan repository is text; a
// file past these limits is a mistake or an attack, and is refused with the
// file's path rather than truncated.
const (
	MaxFileSize  = 4 << 20   // bytes per file
	MaxTotalSize = 256 << 20 // bytes per snapshot
	maxErrors    = 50        // reasons kept per refused tree
	maxLinkHops  = 40        // as Linux's MAXSYMLINKS
)

// Snapshot is one commit of the plan repository, read from the commit's tree
// (never a work tree) and held in memory. It is immutable and safe to share
// between goroutines.
type Snapshot struct {
	// Revision is the commit's full SHA.
	Revision string
	// Ref is the reference it was fetched from, e.g. "refs/heads/main".
	Ref string
	// Author is "Name <email>".
	Author string
	// Time is the committer time: when the commit was made on the branch.
	Time time.Time
	// Message is the full commit message.
	Message string
	// Signer identifies the trusted key that signed the commit (OpenPGP
	// fingerprint or SSH SHA256 fingerprint), when verification is on.
	Signer string
	// FS holds the plan directory (Config.Path) of the commit: read-only,
	// regular files and directories only; symlinks inside the directory are
	// resolved to the files they name.
	FS fs.FS
}

// String returns "ref@sha1:<revision>", the form Flux uses in status.
func (s *Snapshot) String() string {
	if s == nil {
		return "<none>"
	}
	return s.Ref + "@sha1:" + s.Revision
}

// newSnapshot reads dir of commit c into memory. It returns every problem
// found (up to maxErrors), each wrapping ErrInvalid.
//
// Directories whose tree is unchanged since prev (the previous snapshot's
// FS, or nil) and hold no symlink are shared with it rather than read again:
// nodes are immutable, so sharing is safe, and a one-file change in a large
// plan re-reads one directory.
func newSnapshot(st storer.EncodedObjectStorer, c *object.Commit, ref, dir string, prev *treeFS) (*Snapshot, []error) {
	b := &fsBuilder{st: st, prev: prev, fs: &treeFS{nodes: map[string]*node{}, mtime: c.Committer.When}}
	root, err := c.Tree()
	if err != nil {
		return nil, []error{fmt.Errorf("commit %s: tree: %w", c.Hash, err)}
	}
	dir = path.Clean(strings.Trim(dir, "/"))
	if dir != "." {
		root, err = root.Tree(dir)
		if err != nil {
			if errors.Is(err, object.ErrDirectoryNotFound) {
				return nil, []error{fmt.Errorf("%w: directory %q not found in commit", ErrInvalid, dir)}
			}
			return nil, []error{fmt.Errorf("directory %q: %w", dir, err)}
		}
	}
	b.fs.nodes["."] = &node{name: ".", mode: fs.ModeDir | 0o555, tree: root.Hash}
	b.walk(root, ".")
	b.resolveLinks()
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	return &Snapshot{
		Revision: c.Hash.String(),
		Ref:      ref,
		Author:   c.Author.Name + " <" + c.Author.Email + ">",
		Time:     c.Committer.When,
		Message:  c.Message,
		FS:       b.fs,
	}, nil
}

type fsBuilder struct {
	st    storer.EncodedObjectStorer
	prev  *treeFS
	fs    *treeFS
	links []string // paths of symlinks, resolved after the walk
	total int64
	errs  []error
}

func (b *fsBuilder) fail(format string, args ...any) {
	if len(b.errs) < maxErrors {
		b.errs = append(b.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
}

func (b *fsBuilder) add(p string, n *node) {
	n.name = path.Base(p)
	b.fs.nodes[p] = n
	parent := b.fs.nodes[path.Dir(p)]
	parent.children = append(parent.children, n)
}

// walk adds the entries of t, the tree at dir, and returns whether the
// directory is shareable: no symlink below it and nothing refused.
func (b *fsBuilder) walk(t *object.Tree, dir string) (clean bool) {
	errs := len(b.errs)
	clean = true
	self := b.fs.nodes[dir]
	defer func() {
		clean = clean && len(b.errs) == errs
		self.clean = clean
		// Git orders "a.b" before "a/" but "a" after it; fs wants names sorted.
		slices.SortFunc(self.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
	}()
	for _, e := range t.Entries {
		p := path.Join(dir, e.Name)
		if !fs.ValidPath(p) || strings.Contains(e.Name, "\\") {
			b.fail("%s: invalid file name", p)
			continue
		}
		switch e.Mode {
		case filemode.Dir:
			if b.reuse(p, e.Hash) {
				continue
			}
			sub, err := object.GetTree(b.st, e.Hash)
			if err != nil {
				b.errs = append(b.errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
			b.add(p, &node{mode: fs.ModeDir | 0o555, tree: e.Hash})
			clean = b.walk(sub, p) && clean
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			mode := fs.FileMode(0o444)
			if e.Mode == filemode.Executable {
				mode = 0o555
			}
			data, ok := b.read(p, e.Hash)
			if ok {
				b.add(p, &node{mode: mode, data: data})
			}
		case filemode.Symlink:
			data, ok := b.read(p, e.Hash)
			if ok {
				b.add(p, &node{mode: fs.ModeSymlink | 0o777, data: data})
				b.links = append(b.links, p)
			}
			clean = false
		case filemode.Submodule:
			b.fail("%s: submodules are not supported in a plan directory", p)
		default:
			b.fail("%s: unsupported file mode %s", p, e.Mode)
		}
	}
	return clean
}

// reuse shares the directory at p from the previous snapshot if it had the
// same tree and was clean.
func (b *fsBuilder) reuse(p string, tree plumbing.Hash) bool {
	if b.prev == nil {
		return false
	}
	n := b.prev.nodes[p]
	if n == nil || !n.isDir() || !n.clean || n.tree != tree {
		return false
	}
	var size int64
	var copyTree func(p string, n *node)
	copyTree = func(p string, n *node) {
		b.fs.nodes[p] = n
		size += int64(len(n.data))
		for _, c := range n.children {
			copyTree(p+"/"+c.name, c)
		}
	}
	copyTree(p, n)
	b.total += size
	if b.total > MaxTotalSize {
		b.fail("%s: plan directory is over the limit of %d bytes", p, MaxTotalSize)
	}
	parent := b.fs.nodes[path.Dir(p)]
	parent.children = append(parent.children, n)
	return true
}

func (b *fsBuilder) read(p string, h plumbing.Hash) ([]byte, bool) {
	blob, err := object.GetBlob(b.st, h)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", p, err))
		return nil, false
	}
	if blob.Size > MaxFileSize {
		b.fail("%s: file is %d bytes, over the limit of %d", p, blob.Size, MaxFileSize)
		return nil, false
	}
	b.total += blob.Size
	if b.total > MaxTotalSize {
		b.fail("%s: plan directory is over the limit of %d bytes", p, MaxTotalSize)
		return nil, false
	}
	r, err := blob.Reader()
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", p, err))
		return nil, false
	}
	defer r.Close()
	data := make([]byte, 0, blob.Size)
	data, err = readAllLimit(r, data, MaxFileSize)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", p, err))
		return nil, false
	}
	return data, true
}

func readAllLimit(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	w := bytes.NewBuffer(buf)
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: file is over the limit of %d bytes", ErrInvalid, limit)
	}
	return w.Bytes(), nil
}

// resolveLinks replaces every symlink by the regular file it names. Links
// that leave the plan directory, dangle, loop or name a directory are
// refused: following them would let a commit read outside what was reviewed,
// and a directory link can make a tree walk endless.
func (b *fsBuilder) resolveLinks() {
	for _, p := range b.links {
		n := b.fs.nodes[p]
		cur, target := p, n
		for hops := 0; target.mode&fs.ModeSymlink != 0; hops++ {
			if hops == maxLinkHops {
				b.fail("%s: too many levels of symbolic links", p)
				target = nil
				break
			}
			dest := string(target.data)
			if path.IsAbs(dest) {
				b.fail("%s: symlink to absolute path %q", p, dest)
				target = nil
				break
			}
			next := path.Join(path.Dir(cur), dest)
			if next == ".." || strings.HasPrefix(next, "../") {
				b.fail("%s: symlink %q escapes the plan directory", p, dest)
				target = nil
				break
			}
			cur, target = next, b.fs.nodes[next]
			if target == nil {
				b.fail("%s: symlink target %q does not exist in the plan directory", p, dest)
				break
			}
		}
		if target == nil {
			continue
		}
		if target.isDir() {
			b.fail("%s: symlinks to directories are not supported", p)
			continue
		}
		// Safe to share: nodes are never written after the build.
		n.data, n.mode = target.data, target.mode
	}
}

// treeFS is an immutable in-memory fs.FS.
type treeFS struct {
	nodes map[string]*node // by path; "." is the root
	mtime time.Time
}

type node struct {
	name     string
	mode     fs.FileMode
	data     []byte
	children []*node // sorted by name; directories only

	tree  plumbing.Hash // directories: the git tree it was read from
	clean bool          // directories: no symlink below, may be shared
}

func (n *node) isDir() bool { return n.mode.IsDir() }

var (
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

func (f *treeFS) lookup(op, name string) (*node, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := f.nodes[name]
	if n == nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

// Open implements fs.FS.
func (f *treeFS) Open(name string) (fs.File, error) {
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return &openDir{fs: f, n: n}, nil
	}
	return &openFile{fs: f, n: n, r: bytes.NewReader(n.data)}, nil
}

// ReadFile implements fs.ReadFileFS. The caller owns the returned slice.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	n, err := f.lookup("readfile", name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errors.New("is a directory")}
	}
	return bytes.Clone(n.data), nil
}

// ReadDir implements fs.ReadDirFS.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, len(n.children))
	for i, c := range n.children {
		out[i] = fs.FileInfoToDirEntry(fileInfo{c, f.mtime})
	}
	return out, nil
}

// Stat implements fs.StatFS.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return fileInfo{n, f.mtime}, nil
}

type fileInfo struct {
	n     *node
	mtime time.Time
}

func (i fileInfo) Name() string       { return i.n.name }
func (i fileInfo) Size() int64        { return int64(len(i.n.data)) }
func (i fileInfo) Mode() fs.FileMode  { return i.n.mode }
func (i fileInfo) ModTime() time.Time { return i.mtime }
func (i fileInfo) IsDir() bool        { return i.n.isDir() }
func (i fileInfo) Sys() any           { return nil }

type openFile struct {
	fs *treeFS
	n  *node
	r  *bytes.Reader
}

func (o *openFile) Stat() (fs.FileInfo, error)                { return fileInfo{o.n, o.fs.mtime}, nil }
func (o *openFile) Read(p []byte) (int, error)                { return o.r.Read(p) }
func (o *openFile) ReadAt(p []byte, off int64) (int, error)   { return o.r.ReadAt(p, off) }
func (o *openFile) Seek(off int64, whence int) (int64, error) { return o.r.Seek(off, whence) }
func (o *openFile) Close() error                              { return nil }

type openDir struct {
	fs  *treeFS
	n   *node
	off int
}

func (d *openDir) Stat() (fs.FileInfo, error) { return fileInfo{d.n, d.fs.mtime}, nil }
func (d *openDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.n.name, Err: errors.New("is a directory")}
}
func (d *openDir) Close() error { return nil }

// ReadDir implements fs.ReadDirFile.
func (d *openDir) ReadDir(count int) ([]fs.DirEntry, error) {
	rest := d.n.children[d.off:]
	if count > 0 && len(rest) == 0 {
		return nil, io.EOF
	}
	if count > 0 && count < len(rest) {
		rest = rest[:count]
	}
	out := make([]fs.DirEntry, len(rest))
	for i, c := range rest {
		out[i] = fs.FileInfoToDirEntry(fileInfo{c, d.fs.mtime})
	}
	d.off += len(rest)
	return out, nil
}
