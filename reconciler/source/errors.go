package source

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Failures that need a person: retrying will not help until someone changes
// a credential, a host key, the repository or the configuration. Every other
// error from Poll is worth retrying later (network, server down, timeout).
var (
	// ErrAuth means the server refused the credentials, or none were given
	// where some are needed.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey means the SSH server's host key is not in the known_hosts
	// file, or differs from it.
	ErrHostKey = errors.New("ssh host key not trusted")
	// ErrNotFound means the repository, branch, tag or commit does not exist
	// on the remote.
	ErrNotFound = errors.New("not found")
	// ErrRewrite means a commit does not descend from the last accepted one
	// and the source does not allow rewrites.
	ErrRewrite = errors.New("history rewritten")
	// ErrSignature means a commit is unsigned, or not signed by a trusted key.
	ErrSignature = errors.New("signature not trusted")
	// ErrInvalid means the commit's plan directory cannot be read safely
	// (missing, oversized file, escaping symlink, submodule).
	ErrInvalid = errors.New("invalid plan tree")
)

// RefusedError reports a commit that was refused: by the source itself
// (rewrite, signature, unreadable tree) or by the caller through Refuse
// (load, validation or render errors). The last good snapshot stays in force.
type RefusedError struct {
	// Revision is the refused commit's SHA.
	Revision string
	// Errs holds every reason, never empty.
	Errs []error
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "commit %s refused", e.Revision)
	for i, err := range e.Errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the reasons, so errors.Is(err, ErrRewrite) works.
func (e *RefusedError) Unwrap() []error { return e.Errs }

// NeedsPerson reports whether err is a failure that retrying will not cure:
// a refused commit, bad credentials, an untrusted host key, a missing
// reference. Run backs off exponentially on the other errors only.
func NeedsPerson(err error) bool {
	var refused *RefusedError
	return errors.As(err, &refused) ||
		errors.Is(err, ErrAuth) ||
		errors.Is(err, ErrHostKey) ||
		errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrRewrite) ||
		errors.Is(err, ErrSignature) ||
		errors.Is(err, ErrInvalid)
}

// RetryLater marks an error returned by the function given to Run as
// transient: the snapshot is offered again after a backoff instead of being
// refused. Use it for failures that say nothing about the commit (a cluster
// unreachable), never for load, validation or render errors.
func RetryLater(err error) error {
	if err == nil {
		return nil
	}
	return &retryError{err}
}

type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func isRetryLater(err error) bool {
	var r *retryError
	return errors.As(err, &r)
}

// classify maps transport errors onto the sentinels above, keeping the
// original error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	msg := err.Error()
	switch {
	case errors.As(err, &keyErr), errors.As(err, &revoked),
		strings.Contains(msg, "knownhosts:"):
		return wrapKind(ErrHostKey, err)
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"):
		return wrapKind(ErrAuth, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return wrapKind(ErrNotFound, err)
	}
	return err
}

// kindError puts a sentinel in front of an error from a dependency.
type kindError struct {
	kind error
	err  error
}

func wrapKind(kind, err error) error { return &kindError{kind, err} }

func (e *kindError) Error() string {
	if strings.Contains(e.err.Error(), e.kind.Error()) {
		return e.err.Error()
	}
	return e.kind.Error() + ": " + e.err.Error()
}
func (e *kindError) Unwrap() error        { return e.err }
func (e *kindError) Is(target error) bool { return target == e.kind }

// redact returns err with every secret replaced by "***". Secrets are never
// put into errors on purpose; this guards against a dependency echoing one
// (a URL, a server message). The classification survives, the original
// error value does not, as its text is the problem.
func redact(err error, secrets ...[]byte) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if len(s) < 4 { // a tiny secret would blank random words
			continue
		}
		if strings.Contains(msg, string(s)) {
			msg = strings.ReplaceAll(msg, string(s), "***")
			changed = true
		}
	}
	if !changed {
		return err
	}
	r := &redactedError{msg: msg}
	for _, k := range []error{ErrAuth, ErrHostKey, ErrNotFound, ErrRewrite, ErrSignature, ErrInvalid} {
		if errors.Is(err, k) {
			r.kinds = append(r.kinds, k)
		}
	}
	return r
}

type redactedError struct {
	msg   string
	kinds []error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Is(target error) bool {
	for _, k := range e.kinds {
		if k == target {
			return true
		}
	}
	return false
}
