package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage/memory"
)

// fetchThin fetches the commit the ref points at, depth 1, on top of the
// commits in haves, asking for a thin pack. go-git's Remote.Fetch never asks
// for one, and without it git's upload-pack does not subtract the trees of
// the client's shallow commits: every fetch would bring the whole tree again
// (648 KB instead of 600 bytes for one changed file in 10,000). A thin pack
// may hold deltas against objects we already have; they are resolved while
// parsing and the objects written as one self-contained pack.
//
// It returns ok false, and fetches nothing, when the remote no longer has
// the ref (the caller's ordinary fetch reports that).
func (s *Source) fetchThin(ctx context.Context, c creds, haves []plumbing.Hash) (want plumbing.Hash, ok bool, err error) {
	ep, err := transport.NewEndpoint(s.cfg.URL)
	if err != nil {
		return want, false, err
	}
	ep.CaBundle = c.ca
	cl, err := client.NewClient(ep)
	if err != nil {
		return want, false, err
	}
	sess, err := cl.NewUploadPackSession(ep, c.auth)
	if err != nil {
		return want, false, err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return want, false, err
	}
	if want, ok = s.advertised(ar); !ok {
		return want, false, nil
	}
	if s.hasObject(want) {
		return want, true, s.st.SetReference(plumbing.NewHashReference(headRef, want))
	}

	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	for _, cp := range []capability.Capability{capability.Shallow, capability.NoProgress} {
		if ar.Capabilities.Supports(cp) {
			if err := req.Capabilities.Set(cp); err != nil {
				return want, false, err
			}
		}
	}
	// go-git deletes thin-pack from every advertisement it decodes
	// (transport.UnsupportedCapabilities), so its presence cannot be
	// checked; git's upload-pack has always offered it, and a server that
	// refuses the request is retried by the caller with an ordinary fetch.
	if err := req.Capabilities.Set(capability.ThinPack); err != nil {
		return want, false, err
	}
	req.Wants = []plumbing.Hash{want}
	req.Haves = haves
	req.Depth = packp.DepthCommits(1)
	if req.Shallows, err = s.st.Shallow(); err != nil {
		return want, false, err
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return want, false, err
	}
	defer resp.Close()

	var r io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if err := s.storeThinPack(r); err != nil {
		return want, false, fmt.Errorf("thin pack: %w", err)
	}
	if err := s.addShallow(resp.Shallows, resp.Unshallows); err != nil {
		return want, false, err
	}
	if err := s.tidyShallow(); err != nil {
		return want, false, err
	}
	return want, true, s.st.SetReference(plumbing.NewHashReference(headRef, want))
}

// advertised returns the hash the configured ref has in ar.
func (s *Source) advertised(ar *packp.AdvRefs) (plumbing.Hash, bool) {
	if s.cfg.Ref.Commit != "" {
		return plumbing.NewHash(s.cfg.Ref.Commit), true
	}
	name := s.cfg.Ref.remoteName()
	if name == "HEAD" {
		if ar.Head == nil {
			return plumbing.ZeroHash, false
		}
		return *ar.Head, true
	}
	h, ok := ar.References[name]
	return h, ok
}

// storeThinPack parses a (possibly thin) pack into memory, resolving deltas
// against the local store, then writes its objects as one new pack.
func (s *Source) storeThinPack(r io.Reader) error {
	ov := &overlay{ObjectStorage: memory.NewStorage().ObjectStorage, base: s.st}
	p, err := packfile.NewParserWithStorage(packfile.NewScanner(r), ov)
	if err != nil {
		return err
	}
	if _, err := p.Parse(); err != nil {
		return err
	}
	if len(ov.Objects) == 0 {
		return nil
	}
	w, err := s.st.PackfileWriter()
	if err != nil {
		return err
	}
	hashes := slices.Collect(maps.Keys(ov.Objects))
	// No delta search: these are the few objects of one commit.
	if _, err := packfile.NewEncoder(w, &ov.ObjectStorage, false).Encode(hashes, 0); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// overlay keeps new objects in memory and reads missing ones (the bases of
// a thin pack's deltas) from the local store.
type overlay struct {
	memory.ObjectStorage
	base storer.EncodedObjectStorer
}

func (o *overlay) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	obj, err := o.ObjectStorage.EncodedObject(t, h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return o.base.EncodedObject(t, h)
	}
	return obj, err
}

func (s *Source) addShallow(add, remove []plumbing.Hash) error {
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	cur, err := s.st.Shallow()
	if err != nil {
		return err
	}
	set := map[plumbing.Hash]bool{}
	for _, h := range append(cur, add...) {
		set[h] = true
	}
	for _, h := range remove {
		delete(set, h)
	}
	return s.st.SetShallow(slices.Collect(maps.Keys(set)))
}

func (s *Source) hasObject(h plumbing.Hash) bool {
	return s.st.HasEncodedObject(h) == nil
}
