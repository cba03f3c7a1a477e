// Package publish commits the rendered overlays to a branch of a Git
// repository and pushes them: the rendered-manifests pattern, for Argo CD or
// Flux watching that branch to apply. It is a reconciler.Target: a step
// counts as done only once its render is pushed.
//
// It writes only the directories of the clusters it renders; other files on
// the branch (a README, CI configuration) are left alone.
package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/renderer"
)

// Target writes renders into a clone of a repository and pushes them.
type Target struct {
	repo   *git.Repository
	dir    *reconciler.DirTarget
	branch plumbing.ReferenceName
	auth   transport.AuthMethod
	// Now stamps commits; time.Now when nil.
	Now func() time.Time
}

var _ reconciler.Target = (*Target)(nil)

// New opens the clone in workdir, making it on first use, that pushes to
// branch of url.
func New(ctx context.Context, url, branch, workdir string, auth transport.AuthMethod) (*Target, error) {
	t := &Target{branch: plumbing.NewBranchReferenceName(branch), auth: auth, dir: &reconciler.DirTarget{Dir: workdir}}
	repo, err := git.PlainOpen(workdir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInitWithOptions(workdir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: t.branch}})
		if err == nil {
			_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", workdir, err)
	}
	t.repo = repo
	if err := t.sync(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// CheckReadiness is false: a branch has no endpoints to look at.
func (t *Target) CheckReadiness() bool { return false }

// sync makes the work tree the remote branch's tip, when the branch exists.
func (t *Target) sync(ctx context.Context) error {
	remoteRef := plumbing.NewRemoteReferenceName("origin", t.branch.Short())
	err := t.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin", Auth: t.auth, Force: true,
		RefSpecs: []config.RefSpec{config.RefSpec("+" + t.branch.String() + ":" + remoteRef.String())},
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, transport.ErrEmptyRemoteRepository), isMissingRef(err):
		return nil // the first push makes the branch
	default:
		return fmt.Errorf("publish: fetch %s: %w", t.branch.Short(), err)
	}
	ref, err := t.repo.Reference(remoteRef, true)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := t.repo.Storer.SetReference(plumbing.NewHashReference(t.branch, ref.Hash())); err != nil {
		return err
	}
	wt, err := t.repo.Worktree()
	if err != nil {
		return err
	}
	return wt.Reset(&git.ResetOptions{Commit: ref.Hash(), Mode: git.HardReset})
}

func isMissingRef(err error) bool {
	var nf git.NoMatchingRefSpecError
	return errors.As(err, &nf) || strings.Contains(err.Error(), "couldn't find remote ref")
}

// Apply writes res and, when anything changed, commits and pushes it. A
// push refused because the branch moved (someone else pushed) is retried
// once on top of the new tip.
func (t *Target) Apply(ctx context.Context, res *renderer.Result) error {
	var err error
	for range 2 {
		var pushed bool
		if pushed, err = t.publish(ctx, res); pushed || err == nil {
			return err
		}
		if !errors.Is(err, git.ErrNonFastForwardUpdate) && !strings.Contains(err.Error(), "non-fast-forward") {
			return err
		}
		if serr := t.sync(ctx); serr != nil {
			return serr
		}
	}
	return err
}

func (t *Target) publish(ctx context.Context, res *renderer.Result) (bool, error) {
	if err := t.dir.Apply(ctx, res); err != nil {
		return false, err
	}
	wt, err := t.repo.Worktree()
	if err != nil {
		return false, err
	}
	var clusters []string
	for _, c := range res.Clusters {
		clusters = append(clusters, c.Name)
		if err := wt.AddWithOptions(&git.AddOptions{Path: c.Name}); err != nil {
			return false, fmt.Errorf("publish: add %s: %w", c.Name, err)
		}
		// Files of the cluster that the render no longer holds.
		if err := removeDeleted(wt, filepath.Join(t.dir.Dir, c.Name), c.Name); err != nil {
			return false, err
		}
	}
	st, err := wt.Status()
	if err != nil {
		return false, err
	}
	staged := false
	for _, s := range st {
		if s.Staging != git.Unmodified && s.Staging != git.Untracked {
			staged = true
			break
		}
	}
	if !staged {
		return false, nil
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	slices.Sort(clusters)
	sig := &object.Signature{Name: "ferry", Email: "ferry@ferry.invalid", When: now()}
	if _, err := wt.Commit("ferry: rendered overlays of "+strings.Join(clusters, ", "), &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return false, fmt.Errorf("publish: commit: %w", err)
	}
	err = t.repo.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin", Auth: t.auth,
		RefSpecs: []config.RefSpec{config.RefSpec(t.branch.String() + ":" + t.branch.String())},
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return false, fmt.Errorf("publish: push %s: %w", t.branch.Short(), err)
	}
	return true, nil
}

// removeDeleted stages the removal of tracked files under prefix that no
// longer exist on disk.
func removeDeleted(wt *git.Worktree, dir, prefix string) error {
	st, err := wt.Status()
	if err != nil {
		return err
	}
	for path, s := range st {
		if s.Worktree == git.Deleted && strings.HasPrefix(path, prefix+"/") {
			if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(path, prefix+"/"))); os.IsNotExist(err) {
				if _, err := wt.Remove(path); err != nil {
					return fmt.Errorf("publish: remove %s: %w", path, err)
				}
			}
		}
	}
	return nil
}
