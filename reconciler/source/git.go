package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// historyDepths are the depths the history-safety check deepens a shallow
// fetch to, one after another, until it finds the last applied commit. A
// commit more than the last of them past the last applied one is refused as
// if it were a rewrite: proving descent would mean fetching all history.
var historyDepths = []int{32, 1024}

// creds holds what one poll authenticates with. Secrets are read at every
// poll so rotated files take effect without a restart.
type creds struct {
	auth    transport.AuthMethod
	ca      []byte
	secrets [][]byte // to redact from errors
}

func (c creds) redact(err error) error { return redact(err, c.secrets...) }

func (s *Source) creds() (creds, error) {
	var c creds
	a := s.cfg.Auth
	ep, err := transport.NewEndpoint(s.cfg.URL)
	if err != nil {
		return c, fmt.Errorf("source: url: %w", err)
	}
	if a.CAFile != "" {
		if c.ca, err = os.ReadFile(a.CAFile); err != nil {
			return c, fmt.Errorf("source: ca file: %w", err)
		}
	}
	user := a.Username
	if user == "" {
		user = ep.User
	}
	if user == "" {
		user = "git"
	}
	switch ep.Protocol {
	case "http", "https":
		if a.Password.IsZero() {
			return c, nil
		}
		pw, err := a.Password.Read()
		if err != nil {
			return c, fmt.Errorf("source: password: %w", err)
		}
		c.secrets = append(c.secrets, pw)
		c.auth = &githttp.BasicAuth{Username: user, Password: string(pw)}
	case "ssh":
		key, err := a.SSHKey.Read()
		if err != nil {
			return c, fmt.Errorf("source: ssh key: %w", err)
		}
		pass, err := a.SSHKeyPassphrase.Read()
		if err != nil {
			return c, fmt.Errorf("source: ssh key passphrase: %w", err)
		}
		c.secrets = append(c.secrets, pass)
		pk, err := gitssh.NewPublicKeys(user, key, string(pass))
		if err != nil {
			// x/crypto/ssh parse errors never quote the key; redact anyway.
			return c, redact(fmt.Errorf("source: ssh key: %w", err), pass)
		}
		db, err := gitssh.NewKnownHostsDb(a.KnownHostsFile)
		if err != nil {
			return c, fmt.Errorf("source: known hosts: %w", err)
		}
		port := ep.Port
		if port == 0 {
			port = 22
		}
		pk.HostKeyCallback = db.HostKeyCallback()
		// Offer only the key types known_hosts has for this host, or the
		// server may pick a type we hold no key for and fail the check.
		pk.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, fmt.Sprint(port)))
		c.auth = pk
	}
	return c, nil
}

// resolve returns the commit the configured ref points at on the remote, and
// the full ref name. For a pinned commit it asks nothing.
func (s *Source) resolve(ctx context.Context, c creds) (plumbing.Hash, string, error) {
	if s.cfg.Ref.Commit != "" {
		return plumbing.NewHash(s.cfg.Ref.Commit), s.cfg.Ref.Commit, nil
	}
	refs, err := s.remote.ListContext(ctx, &git.ListOptions{
		Auth:          c.auth,
		CABundle:      c.ca,
		PeelingOption: git.AppendPeeled,
	})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, "", fmt.Errorf("%w: repository is empty", ErrNotFound)
	}
	if err != nil {
		return plumbing.ZeroHash, "", err
	}
	byName := make(map[string]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name().String()] = r
	}
	name := s.cfg.Ref.remoteName()
	r := byName[name]
	if r != nil && r.Type() == plumbing.SymbolicReference { // HEAD
		name = r.Target().String()
		r = byName[name]
	}
	if r == nil {
		return plumbing.ZeroHash, "", fmt.Errorf("%w: %s does not exist on the remote", ErrNotFound, s.cfg.Ref)
	}
	if peeled := byName[name+"^{}"]; peeled != nil { // annotated tag
		return peeled.Hash(), name, nil
	}
	return r.Hash(), name, nil
}

// fetch fetches the configured ref into headRef, depth commits deep, and
// returns the commit it points at. Only that one ref is fetched, no tags.
func (s *Source) fetch(ctx context.Context, c creds, depth int) (plumbing.Hash, error) {
	if depth == 1 {
		if haves := s.localHaves(); len(haves) > 0 {
			want, ok, err := s.fetchThin(ctx, c, haves)
			switch {
			case err == nil && ok:
				return s.peel(want)
			case err != nil && (ctx.Err() != nil || NeedsPerson(classify(err))):
				return plumbing.ZeroHash, err
			case err != nil:
				s.log.Debug("thin fetch failed; fetching the whole tree", "error", c.redact(err))
			}
		}
	}
	spec := config.RefSpec("+" + s.cfg.Ref.remoteName() + ":" + headRef.String())
	err := s.remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{spec},
		Depth:    depth,
		Auth:     c.auth,
		CABundle: c.ca,
		Tags:     git.NoTags,
		Force:    true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if errors.Is(err, git.ErrExactSHA1NotSupported) {
			return plumbing.ZeroHash, fmt.Errorf("%w: the server does not allow fetching a commit by SHA; pin a tag or branch instead", err)
		}
		if errors.Is(err, git.NoMatchingRefSpecError{}) {
			return plumbing.ZeroHash, fmt.Errorf("%w: %s: %w", ErrNotFound, s.cfg.Ref, err)
		}
		return plumbing.ZeroHash, err
	}
	if err := s.tidyShallow(); err != nil {
		return plumbing.ZeroHash, err
	}
	ref, err := s.st.Reference(headRef)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return s.peel(ref.Hash())
}

// localHaves returns the fetched and the accepted commit, those present.
func (s *Source) localHaves() []plumbing.Hash {
	var out []plumbing.Hash
	for _, name := range []plumbing.ReferenceName{headRef, lastGoodRef} {
		ref, err := s.st.Reference(name)
		if err != nil {
			continue
		}
		if h, err := s.peel(ref.Hash()); err == nil && s.hasCommit(h) && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// peel returns the commit a tag object points at, or h itself.
func (s *Source) peel(h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		tag, err := s.repo.TagObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return h, nil // not a tag
		}
		if err != nil {
			return h, err
		}
		h = tag.Target
	}
	return h, fmt.Errorf("tag %s: too many levels of tags", h)
}

func (s *Source) hasCommit(h plumbing.Hash) bool {
	_, err := s.st.EncodedObject(plumbing.CommitObject, h)
	return err == nil
}

// tidyShallow drops from the shallow list the commits whose parents are now
// all present. go-git only ever adds to the list (it ignores the server's
// "unshallow" lines), and a stale entry makes the next fetch tell the server
// we lack history we have, and grows every request.
func (s *Source) tidyShallow() error {
	shallow, err := s.st.Shallow()
	if err != nil || len(shallow) == 0 {
		return err
	}
	keep := shallow[:0:0]
	for _, h := range shallow {
		c, err := object.GetCommit(s.st, h)
		if err != nil {
			keep = append(keep, h)
			continue
		}
		for _, p := range c.ParentHashes {
			if !s.hasCommit(p) {
				keep = append(keep, h)
				break
			}
		}
	}
	if len(keep) == len(shallow) {
		return nil
	}
	return s.st.SetShallow(keep)
}

// descends reports whether anc is in the history of tip. The local store is
// shallow, so when the walk runs into missing parents it deepens the fetch
// (see historyDepths) and walks again.
func (s *Source) descends(ctx context.Context, c creds, tip, anc plumbing.Hash) (bool, error) {
	for i := 0; ; i++ {
		found, complete, err := s.walk(tip, anc)
		if err != nil || found || complete {
			return found, err
		}
		if i == len(historyDepths) {
			return false, nil
		}
		s.log.Debug("deepening fetch for the history check", "revision", tip.String(), "depth", historyDepths[i])
		if _, err := s.fetch(ctx, c, historyDepths[i]); err != nil {
			return false, err
		}
	}
}

// walk searches the locally present history of tip for anc. complete is
// true when no parent was missing, so "not found" is final.
func (s *Source) walk(tip, anc plumbing.Hash) (found, complete bool, err error) {
	seen := map[plumbing.Hash]bool{tip: true}
	queue := []plumbing.Hash{tip}
	complete = true
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if h == anc {
			return true, false, nil
		}
		c, err := object.GetCommit(s.st, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			complete = false // the shallow edge
			continue
		}
		if err != nil {
			return false, false, err
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, complete, nil
}
