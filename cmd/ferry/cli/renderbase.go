package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"testing/fstest"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
	"github.com/ferry-dev/ferry/renderer"
)

// baseOptions are the flags of `ferry render --base`.
type baseOptions struct {
	dir            string // the plan directory, as given
	base, head     string // refs; head "" is the working tree
	format         string // text or markdown
	stateDir       string // "" assumes progress from the flags alone
	stepFlags      []string
	waveFlags      []string
	failOnPrune    bool
	failOnRollback bool
}

// side is the plans and their render at one ref.
type side struct {
	label string // what the reader is told: "origin/main (1a2b3c4)"
	repo  *plans.Repository
	res   *renderer.Result
	// progress is the assumed progress of each migration's services, by
	// migration and service ref.
	progress map[string]map[string]plans.Progress
}

// runRenderBase compares the plans at opts.base with those at opts.head and
// writes the report; its error carries the exit code.
func runRenderBase(ctx context.Context, g *Globals, opts baseOptions) error {
	if opts.format != "text" && opts.format != "markdown" {
		return withCode(ExitUsage, fmt.Errorf("--format %q: expected text or markdown", opts.format))
	}
	gr, rel, err := openGit(opts.dir)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	head, err := loadHead(g, gr, rel, opts)
	if err != nil {
		return err
	}
	base, notes, err := loadBase(gr, rel, opts)
	if err != nil {
		return err
	}
	weights, assumed, err := assumedWeights(ctx, head.repo, opts)
	if err != nil {
		return err
	}
	now := clock()
	if err := base.render(now, weights); err != nil {
		notes = append(notes, fmt.Sprintf("the plans at %s do not render (%s); everything at head is shown as new", base.label, firstLine(err)))
		base.repo, base.res = nil, &renderer.Result{}
	}
	if err := head.render(now, weights); err != nil {
		return withCode(ExitInvalid, fmt.Errorf("render %s at %s: %w", opts.dir, head.label, err))
	}

	c, err := compare(now, base, head)
	if err != nil {
		return withCode(ExitUsage, err)
	}
	c.Assumed, c.Notes = assumed, notes
	if opts.format == "markdown" {
		err = writeMarkdown(g.Stdout, c)
	} else {
		err = writeText(g.Stdout, c)
	}
	if err != nil {
		return withCode(ExitUsage, err)
	}
	return policy(c, opts)
}

// loadHead loads the plans at --head, or in the working tree. Invalid plans
// are printed as ferry validate prints them and exit 1.
func loadHead(g *Globals, gr *git.Repository, rel string, opts baseOptions) (*side, error) {
	head := &side{label: workingTree}
	var err error
	if opts.head == "" {
		head.repo, err = loadDir(opts.dir)
	} else {
		var fsys fs.FS
		fsys, head.label, err = treeAt(gr, opts.head, rel)
		if err == nil {
			head.repo, err = plans.Load(fsys)
		}
	}
	var verrs plans.Errors
	switch {
	case errors.As(err, &verrs):
		for _, e := range verrs {
			fmt.Fprintln(g.Stdout, e)
		}
		return nil, withCode(ExitInvalid, fmt.Errorf("%d error(s) in %s at %s", len(verrs), opts.dir, head.label))
	case err != nil:
		return nil, withCode(ExitUsage, err)
	}
	return head, nil
}

// loadBase loads the plans at --base. Plans missing or invalid there are
// compared as empty, with a note: the pull request may add them, or fix
// a broken base.
func loadBase(gr *git.Repository, rel string, opts baseOptions) (*side, []string, error) {
	fsys, label, err := treeAt(gr, opts.base, rel)
	base := &side{label: label}
	switch {
	case errors.Is(err, errNoPlans):
		return base, []string{fmt.Sprintf("%s holds no %s; everything at head is new", label, opts.dir)}, nil
	case err != nil:
		return nil, nil, withCode(ExitUsage, err)
	}
	if base.repo, err = plans.Load(fsys); err != nil {
		base.repo = nil
		return base, []string{fmt.Sprintf("the plans at %s are invalid (%s); everything at head is shown as new", label, firstLine(err))}, nil
	}
	return base, nil, nil
}

// render renders the side's plans at the assumed weights; a side without
// plans renders nothing.
func (s *side) render(now time.Time, weights map[plans.ServiceID]int) error {
	s.res = &renderer.Result{}
	if s.repo == nil {
		return nil
	}
	s.progress = progressAt(now, s.repo, weights)
	res, err := renderer.Render(s.repo, stepsOf(s.repo, s.progress))
	if err != nil {
		return err
	}
	s.res = res
	return nil
}

// policy applies the --fail-on-* flags to the comparison.
func policy(c *comparison, opts baseOptions) error {
	if n := c.prunes(); opts.failOnPrune && n > 0 {
		return withCode(ExitInvalid, fmt.Errorf("--fail-on-prune: %d object(s) would be pruned", n))
	}
	if n := c.rollbacks(); opts.failOnRollback && n > 0 {
		return withCode(ExitInvalid, fmt.Errorf("--fail-on-rollback: %d rollback(s) set", n))
	}
	return nil
}

// workingTree labels the head side when no --head is given.
const workingTree = "the working tree"

// errNoPlans says that the plan directory does not exist at a ref.
var errNoPlans = errors.New("no plan directory")

// openGit opens the Git working copy holding dir and returns dir's path
// inside it, slash-separated ("." for the root).
func openGit(dir string) (*git.Repository, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("plan directory %s: %w", dir, err)
	}
	// Symlinked temp directories (macOS /tmp) would make the path relative
	// to the worktree root wrong.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, "", fmt.Errorf("plan directory: %w", err)
	}
	// EnableDotGitCommonDir: a linked worktree (git worktree add) keeps its
	// objects in the main repository's .git.
	gr, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, "", fmt.Errorf("plan directory %s: --base needs a Git working copy: %w", dir, err)
	}
	wt, err := gr.Worktree()
	if err != nil {
		return nil, "", fmt.Errorf("plan directory %s: %w", dir, err)
	}
	root, err := filepath.EvalSymlinks(wt.Filesystem.Root())
	if err != nil {
		return nil, "", fmt.Errorf("git worktree: %w", err)
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, "", fmt.Errorf("plan directory %s is outside the Git worktree %s", dir, root)
	}
	return gr, filepath.ToSlash(rel), nil
}

// treeAt returns the files of directory rel at ref, and a label naming the
// ref and its commit. Only the files the plan loader reads are read.
func treeAt(gr *git.Repository, ref, rel string) (fs.FS, string, error) {
	h, err := gr.ResolveRevision(plumbing.Revision(ref))
	if errors.Is(err, plumbing.ErrReferenceNotFound) || errors.Is(err, plumbing.ErrObjectNotFound) {
		// CI checkouts are shallow, single-branch clones by default.
		return nil, ref, fmt.Errorf("resolve %q: %w; is it fetched? (git fetch origin, or fetch-depth: 0 in CI)", ref, err)
	}
	if err != nil {
		return nil, ref, fmt.Errorf("resolve %q: %w", ref, err)
	}
	label := fmt.Sprintf("%s (%s)", ref, h.String()[:7])
	commit, err := gr.CommitObject(*h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, label, fmt.Errorf("%s: %w; is it fetched? (git fetch origin, or fetch-depth: 0 in CI)", label, err)
	}
	if err != nil {
		return nil, label, fmt.Errorf("%s: %w", label, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, label, fmt.Errorf("%s: tree: %w", label, err)
	}
	if rel != "." {
		tree, err = tree.Tree(rel)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return nil, label, fmt.Errorf("%s: no directory %s: %w", label, rel, errNoPlans)
		}
		if err != nil {
			return nil, label, fmt.Errorf("%s: %s: %w", label, rel, err)
		}
	}
	// A plan tree is small: holding it in a MapFS (a complete fs.FS from
	// the standard library) lets plans.Load read a commit as it reads a
	// directory, with the same rules and the same error positions.
	files := fstest.MapFS{}
	err = tree.Files().ForEach(func(f *object.File) error {
		if !planFile(f.Name) {
			return nil
		}
		data, err := f.Contents()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", label, f.Name, err)
		}
		mf := &fstest.MapFile{Data: []byte(data), Mode: 0o644}
		if f.Mode == filemode.Symlink {
			// The loader refuses symlinks; let it say so as it does for a
			// working tree.
			mf.Mode = fs.ModeSymlink
		}
		files[f.Name] = mf
		return nil
	})
	if err != nil {
		return nil, label, err
	}
	return files, label, nil
}

// planFile reports whether the plan loader may read the file at p, so that
// other blobs of a large repository are never read.
func planFile(p string) bool {
	if strings.HasPrefix(p, plans.OverlaysDir+"/") {
		return true
	}
	switch path.Ext(p) {
	case ".cue", ".yaml", ".yml":
		return true
	}
	return false
}

// assumedWeights returns the weight each service is assumed at, by
// migration and service ref, from the state store (if --state-dir names
// one) overridden by --step and --wave, and says so in words.
func assumedWeights(ctx context.Context, repo *plans.Repository, opts baseOptions) (map[plans.ServiceID]int, string, error) {
	weights := map[plans.ServiceID]int{}
	var from []string
	if opts.stateDir != "" {
		st, err := (&stateFlags{stateDir: opts.stateDir}).readStore()
		if err != nil {
			return nil, "", err
		}
		if st == nil {
			return nil, "", withCode(ExitUsage, fmt.Errorf("--state-dir %s: no %s", opts.stateDir, state.BoltFile))
		}
		for _, m := range repo.Migrations {
			snap, _, err := load(ctx, st, m.Name)
			if err != nil {
				return nil, "", withCode(ExitUsage, err)
			}
			for ref, p := range snap.Services {
				weights[plans.ServiceID{Migration: m.Name, Service: ref}] = p.Weight
			}
		}
		from = append(from, "the progress recorded in "+opts.stateDir)
	}
	steps, err := parseStepFlags(repo, opts.stepFlags, opts.waveFlags)
	if err != nil {
		return nil, "", withCode(ExitUsage, err)
	}
	for id, idx := range steps {
		weights[id] = repo.Migration(id.Migration).Steps[idx].Weight
	}
	if len(opts.stepFlags)+len(opts.waveFlags) > 0 {
		from = append(from, "--step/--wave")
	}
	if len(from) == 0 {
		return weights, "every service at weight 0 (no --state-dir, --step or --wave)", nil
	}
	return weights, "weights from " + strings.Join(from, " and ") + ", every other service at 0", nil
}

// progressAt maps the assumed weights onto repo's steps the way the engine
// maps progress onto edited steps: the highest step not above the weight.
func progressAt(now time.Time, repo *plans.Repository, weights map[plans.ServiceID]int) map[string]map[string]plans.Progress {
	out := map[string]map[string]plans.Progress{}
	for _, m := range repo.Migrations {
		prog := map[string]plans.Progress{}
		for _, s := range m.Services() {
			w, ok := weights[plans.ServiceID{Migration: m.Name, Service: s.Ref()}]
			if !ok || w == 0 {
				continue
			}
			p := plans.NewProgress(now)
			p.Step = m.StepIndexForWeight(w)
			p.Weight = m.Steps[p.Step].Weight
			p.State = plans.StateProgressing
			if p.Step == len(m.Steps)-1 {
				p.State = plans.StateComplete
			}
			prog[s.Ref()] = p
		}
		out[m.Name] = prog
	}
	return out
}

// stepsOf returns the step index of every service with progress.
func stepsOf(repo *plans.Repository, progress map[string]map[string]plans.Progress) plans.Steps {
	steps := plans.Steps{}
	for _, m := range repo.Migrations {
		for ref, p := range progress[m.Name] {
			steps[plans.ServiceID{Migration: m.Name, Service: ref}] = p.Step
		}
	}
	return steps
}

// firstLine shortens a multi-line error (plans.Errors) for a note.
func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + ", …"
	}
	return s
}
