package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Local references in the state directory's repository. They keep the
// objects of the fetched and the accepted commit, and make the accepted one
// visible to `git log` when someone debugs the state directory.
const (
	headRef     = plumbing.ReferenceName("refs/ferry/head")
	lastGoodRef = plumbing.ReferenceName("refs/ferry/last-good")
)

// Source polls one Git repository and hands out snapshots of its plan
// directory. Its methods are safe for concurrent use; polls are serialized.
type Source struct {
	cfg    Config
	dir    string
	log    *slog.Logger
	keys   *keyring // nil when verification is off
	st     *filesystem.Storage
	repo   *git.Repository
	remote *git.Remote

	trigger chan struct{}
	prevFS  *treeFS // the last snapshot built, to share unchanged directories; under pollMu

	pollMu sync.Mutex // serializes Poll, Accept and Refuse (they share st)

	mu         sync.Mutex // guards the fields below
	lastGood   *Snapshot
	lastGoodID string // survives even if the snapshot could not be rebuilt
	pending    *Snapshot
	refused    *RefusedError
	lastErr    error
	lastPoll   time.Time
	fetches    int
}

// New returns a Source for cfg keeping its objects and state in stateDir,
// which belongs to this source alone. It reads the credentials and trusted
// keys once, so a misconfiguration fails here rather than at the first poll,
// and restores the last accepted snapshot from a previous run, if any.
func New(cfg Config, stateDir string, log *slog.Logger) (*Source, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:     cfg,
		dir:     stateDir,
		log:     log.With("source", cfg.URL),
		trigger: make(chan struct{}, 1),
	}
	if _, err := s.creds(); err != nil {
		return nil, err
	}
	if cfg.Verify.Mode == VerifyHead {
		if s.keys, err = loadKeyring(cfg.Verify.TrustedKeys); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	s.st = filesystem.NewStorageWithOptions(
		osfs.New(filepath.Join(stateDir, "repo.git")),
		cache.NewObjectLRUDefault(),
		filesystem.Options{ExclusiveAccess: true, KeepDescriptors: true},
	)
	s.repo, err = git.Open(s.st, nil)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		s.repo, err = git.Init(s.st, nil)
	}
	if err != nil {
		s.st.Close()
		return nil, fmt.Errorf("source: open %s: %w", stateDir, err)
	}
	s.remote = git.NewRemote(s.st, &config.RemoteConfig{Name: "origin", URLs: []string{cfg.URL}})

	p, err := loadState(stateDir)
	if err != nil {
		s.st.Close()
		return nil, err
	}
	if p.LastGood != "" {
		s.lastGoodID = p.LastGood
		snap, err := s.load(plumbing.NewHash(p.LastGood), "")
		if err != nil {
			// History safety still holds: it needs only the SHA.
			s.log.Warn("last good commit not restored; waiting for the next accepted one",
				"revision", p.LastGood, "error", err)
		} else {
			s.lastGood = snap
		}
	}
	return s, nil
}

// Close releases the files held open by the object store.
func (s *Source) Close() error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	return s.st.Close()
}

// LastGood returns the last accepted snapshot, or nil if none was accepted
// yet (or it could not be restored after a restart).
func (s *Source) LastGood() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastGood
}

// Status is what a source reports for status pages and metrics.
type Status struct {
	// LastGood is the snapshot in force; LastGoodRevision is its SHA, also
	// set when the snapshot itself could not be restored.
	LastGood         *Snapshot
	LastGoodRevision string
	// Refused is the latest refused commit since the last accepted one.
	Refused *RefusedError
	// LastPoll is when the last poll ended and LastError what it returned.
	LastPoll  time.Time
	LastError error
	// Fetches counts polls that downloaded objects.
	Fetches int
}

// Status returns the current status.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		LastGood:         s.lastGood,
		LastGoodRevision: s.lastGoodID,
		Refused:          s.refused,
		LastPoll:         s.lastPoll,
		LastError:        s.lastErr,
		Fetches:          s.fetches,
	}
}

// Trigger asks Run for a poll now. It never blocks; triggers that arrive
// while one is pending are merged into it.
func (s *Source) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Poll asks the remote where the ref points and, only if that moved, fetches
// the new commit and checks it: history safety, signature, plan tree. It
// returns:
//
//   - (candidate, true, nil) for a new commit that passed, to be validated and
//     rendered by the caller, then passed to Accept or Refuse. The same
//     candidate is returned until one of them is called.
//   - (last good, false, nil) when nothing changed (LastGood may be nil).
//   - (nil, false, *RefusedError) when the ref points at a refused commit.
//   - (nil, false, err) otherwise; NeedsPerson(err) sorts it.
//
// A no-op poll costs one reference listing (one HTTP request or SSH command)
// and no object transfer.
func (s *Source) Poll(ctx context.Context) (*Snapshot, bool, error) {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	snap, changed, err := s.poll(ctx)
	s.mu.Lock()
	s.lastPoll, s.lastErr = time.Now(), err
	s.mu.Unlock()
	return snap, changed, err
}

func (s *Source) poll(ctx context.Context) (*Snapshot, bool, error) {
	c, err := s.creds()
	if err != nil {
		return nil, false, err
	}
	want, refName, err := s.resolve(ctx, c)
	if err != nil {
		return nil, false, c.redact(fmt.Errorf("%s %s: %w", s.cfg.URL, s.cfg.Ref, classify(err)))
	}
	rev := want.String()

	s.mu.Lock()
	lastGood, lastGoodID, pending, refused := s.lastGood, s.lastGoodID, s.pending, s.refused
	s.mu.Unlock()
	switch {
	case rev == lastGoodID && lastGood != nil:
		return lastGood, false, nil
	case pending != nil && rev == pending.Revision:
		return pending, true, nil
	case refused != nil && rev == refused.Revision:
		return nil, false, refused
	}

	if !s.hasCommit(want) {
		start := time.Now()
		got, err := s.fetch(ctx, c, 1)
		if err != nil {
			return nil, false, c.redact(fmt.Errorf("%s %s: fetch: %w", s.cfg.URL, s.cfg.Ref, classify(err)))
		}
		s.mu.Lock()
		s.fetches++
		s.mu.Unlock()
		s.log.Debug("fetched", "revision", got.String(), "duration", time.Since(start))
		// The ref may have moved between listing and fetching: take the
		// newer commit rather than one the fetch may not have brought.
		if got != want && !s.hasCommit(want) {
			want, rev = got, got.String()
		}
	}

	var reasons []error
	if lastGoodID != "" && rev != lastGoodID && !s.cfg.AllowRewrite {
		ok, err := s.descends(ctx, c, want, plumbing.NewHash(lastGoodID))
		switch {
		case err != nil:
			return nil, false, c.redact(fmt.Errorf("%s %s: history of %s: %w", s.cfg.URL, s.cfg.Ref, rev, classify(err)))
		case !ok:
			reasons = append(reasons, fmt.Errorf("%w: %s does not descend from the last applied commit %s (set allowRewrite to accept it)", ErrRewrite, rev, lastGoodID))
		}
	}
	snap, err := s.load(want, refName)
	if err != nil {
		var invalid []error
		for _, e := range unwrapAll(err) {
			if !errors.Is(e, ErrInvalid) && !errors.Is(e, ErrSignature) {
				// A missing object or an I/O error says nothing about the
				// commit: retry rather than refuse it.
				return nil, false, fmt.Errorf("%s: read commit %s: %w", s.cfg.URL, rev, e)
			}
			invalid = append(invalid, e)
		}
		reasons = append(reasons, invalid...)
	}
	if len(reasons) > 0 {
		r := &RefusedError{Revision: rev, Errs: reasons}
		s.mu.Lock()
		s.refused, s.pending = r, nil
		s.mu.Unlock()
		s.log.Error("commit refused", "revision", rev, "error", r)
		return nil, false, r
	}
	s.mu.Lock()
	s.pending = snap
	s.mu.Unlock()
	s.log.Info("new commit", "revision", rev, "author", snap.Author)
	return snap, true, nil
}

// load reads a commit from the local store, verifies its signature if
// configured, and builds its snapshot. The error holds every reason.
func (s *Source) load(h plumbing.Hash, refName string) (*Snapshot, error) {
	commit, err := s.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	var errs []error
	var signer string
	if s.keys != nil {
		if signer, err = s.keys.verify(commit); err != nil {
			errs = append(errs, err)
		}
	}
	snap, ferrs := newSnapshot(s.st, commit, refName, s.cfg.Path, s.prevFS)
	errs = append(errs, ferrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.prevFS = snap.FS.(*treeFS)
	snap.Signer = signer
	return snap, nil
}

// Accept records rev, the candidate last returned by Poll, as applied: it
// becomes LastGood, is persisted, and future commits must descend from it.
func (s *Source) Accept(rev string) error {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	s.mu.Lock()
	pending, lastGoodID := s.pending, s.lastGoodID
	s.mu.Unlock()
	if pending == nil || pending.Revision != rev {
		if rev == lastGoodID {
			return nil
		}
		return fmt.Errorf("source: accept %s: not the candidate returned by Poll", rev)
	}
	ref := plumbing.NewHashReference(lastGoodRef, plumbing.NewHash(rev))
	if err := s.st.SetReference(ref); err != nil {
		return fmt.Errorf("source: accept %s: %w", rev, err)
	}
	if err := saveState(s.dir, persisted{URL: s.cfg.URL, LastGood: rev, AcceptedAt: time.Now().UTC()}); err != nil {
		return fmt.Errorf("source: accept %s: %w", rev, err)
	}
	s.mu.Lock()
	s.lastGood, s.lastGoodID, s.pending, s.refused = pending, rev, nil, nil
	s.mu.Unlock()
	s.log.Info("commit accepted", "revision", rev)
	return nil
}

// Refuse records that rev, the candidate last returned by Poll, failed to
// load, validate or render. The last good snapshot stays in force and Poll
// will not offer rev again (until a restart, so a fixed ferry can retry it).
// It returns the refusal, carrying every reason err holds (errors.Join).
func (s *Source) Refuse(rev string, err error) *RefusedError {
	if err == nil {
		err = errors.New("refused")
	}
	r := &RefusedError{Revision: rev, Errs: unwrapAll(err)}
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	s.mu.Lock()
	if s.pending != nil && s.pending.Revision == rev {
		s.pending = nil
	}
	s.refused = r
	s.mu.Unlock()
	s.log.Error("commit refused", "revision", rev, "error", r)
	return r
}

// joinType is the type errors.Join returns; unwrapAll flattens only those,
// not every error with several causes (fmt.Errorf with two %w).
var joinType = reflect.TypeOf(errors.Join(errors.New("")))

// unwrapAll flattens errors.Join trees into their leaves.
func unwrapAll(err error) []error {
	if reflect.TypeOf(err) != joinType {
		return []error{err}
	}
	var out []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		out = append(out, unwrapAll(e)...)
	}
	return out
}

// At returns the snapshot of an earlier commit still in the local store,
// checked as when it was new (signature, plan tree). The reconciler reads
// from it the definitions of migrations and services removed since, to
// send their traffic back after a restart.
func (s *Source) At(rev string) (*Snapshot, error) {
	h := plumbing.NewHash(rev)
	if len(rev) != 40 || h.IsZero() {
		return nil, fmt.Errorf("revision %q: not a commit hash", rev)
	}
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	commit, err := s.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", rev, err)
	}
	if s.keys != nil {
		if _, err := s.keys.verify(commit); err != nil {
			return nil, err
		}
	}
	snap, errs := newSnapshot(s.st, commit, "", s.cfg.Path, nil)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
}
