package source

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultInterval   = time.Minute
	DefaultTimeout    = time.Minute
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 5 * time.Minute
)

// Config says which repository, which reference and which directory of it is
// the plan, how often to look, and how to authenticate and verify.
type Config struct {
	// URL of the repository: https://, http:// (no credentials), ssh:// or
	// scp-like user@host:path, git://, file:// or a local path. It must not
	// carry a password.
	URL string
	// Ref selects the commit; empty means the remote's HEAD.
	Ref Ref
	// Path is the plan directory inside the repository; empty means the root.
	Path string
	// Interval between polls in Run.
	Interval time.Duration
	// Timeout bounds one poll: listing, fetching and reading the commit.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff of Run after
	// an error that may go away by itself (network, server down).
	BackoffMin, BackoffMax time.Duration
	// AllowRewrite accepts a commit that does not descend from the last
	// accepted one (force-push, history rewrite). Off by default.
	AllowRewrite bool
	// Auth holds where credentials are read from.
	Auth Auth
	// Verify configures commit signature verification.
	Verify Verify
}

// Ref selects one of a branch, a tag or a pinned commit.
type Ref struct {
	Branch string
	Tag    string
	// Commit is a full 40-hex SHA-1. Fetching it needs a server that allows
	// wanting any reachable commit (uploadpack.allowReachableSHA1InWant, as
	// GitHub and GitLab do).
	Commit string
}

// String returns the ref as it appears in logs: "branch main", "tag v1",
// "commit <sha>" or "HEAD".
func (r Ref) String() string {
	switch {
	case r.Commit != "":
		return "commit " + r.Commit
	case r.Tag != "":
		return "tag " + r.Tag
	case r.Branch != "":
		return "branch " + r.Branch
	}
	return "HEAD"
}

// refspec returns the remote name to fetch, stored locally as headRef.
func (r Ref) remoteName() string {
	switch {
	case r.Commit != "":
		return r.Commit
	case r.Tag != "":
		return "refs/tags/" + r.Tag
	case r.Branch != "":
		return "refs/heads/" + r.Branch
	}
	return "HEAD"
}

// Auth says where credentials come from. They are read at every poll, so a
// rotated secret file is picked up without a restart, and they never appear
// in logs or errors.
type Auth struct {
	// Username for HTTPS basic auth (default "git"; a token needs any
	// non-empty user) or the SSH user when the URL names none.
	Username string
	// Password is the HTTPS password or access token.
	Password Secret
	// SSHKey is a PEM or OpenSSH private key.
	SSHKey Secret
	// SSHKeyPassphrase decrypts SSHKey, if it is encrypted.
	SSHKeyPassphrase Secret
	// KnownHostsFile lists the trusted SSH host keys, in known_hosts format.
	// Required for SSH: an unknown host key is always refused.
	KnownHostsFile string
	// CAFile holds extra PEM certificates to trust for HTTPS.
	CAFile string
}

// Secret names a file or an environment variable holding a credential. There
// is deliberately no field for the value itself, so credentials never appear
// in a command line or a config file.
type Secret struct {
	File string
	Env  string
}

// IsZero reports whether no source is set.
func (s Secret) IsZero() bool { return s.File == "" && s.Env == "" }

// Read returns the secret. A trailing newline, as editors and
// `kubectl create secret --from-file` leave it, is removed.
func (s Secret) Read() ([]byte, error) {
	switch {
	case s.File != "" && s.Env != "":
		return nil, errors.New("secret: set a file or an environment variable, not both")
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			// The path is fine to show; the content never is.
			return nil, fmt.Errorf("secret file: %w", err)
		}
		return trimNewline(b), nil
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return nil, fmt.Errorf("secret: environment variable %s is not set", s.Env)
		}
		return trimNewline([]byte(v)), nil
	}
	return nil, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// VerifyMode says which commits must carry a trusted signature.
type VerifyMode string

// Verification modes.
const (
	// VerifyNone checks no signature.
	VerifyNone VerifyMode = "none"
	// VerifyHead requires the commit being loaded to be signed by a trusted
	// key. (Commits between two accepted heads are not checked, as in Flux.)
	VerifyHead VerifyMode = "head"
)

// Verify configures commit signature verification.
type Verify struct {
	Mode VerifyMode
	// TrustedKeys are files of trusted public keys: ASCII-armored OpenPGP
	// keys (one or more blocks), or SSH public keys one per line in
	// authorized_keys or allowed_signers form.
	TrustedKeys []string
}

// withDefaults returns c with zero durations replaced by the defaults and
// checks it.
func (c Config) withDefaults() (Config, error) {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.Verify.Mode == "" {
		c.Verify.Mode = VerifyNone
	}
	return c, c.check()
}

func (c Config) check() error {
	if c.URL == "" {
		return errors.New("source: url is empty")
	}
	ep, err := transport.NewEndpoint(c.URL)
	if err != nil {
		return fmt.Errorf("source: url: %w", err)
	}
	if ep.Password != "" {
		return errors.New("source: url must not contain a password; use auth.password")
	}
	n := 0
	for _, s := range []string{c.Ref.Branch, c.Ref.Tag, c.Ref.Commit} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("source: set at most one of ref.branch, ref.tag and ref.commit")
	}
	if c.Ref.Commit != "" && !plumbing.IsHash(c.Ref.Commit) {
		return fmt.Errorf("source: ref.commit %q is not a full 40-hex commit id", c.Ref.Commit)
	}
	for _, s := range []string{c.Ref.Branch, c.Ref.Tag} {
		if strings.HasPrefix(s, "refs/") || strings.ContainsAny(s, " ~^:?*[\\") {
			return fmt.Errorf("source: ref %q: give the short branch or tag name", s)
		}
	}
	if strings.HasPrefix(c.Path, "/") || strings.Contains("/"+c.Path+"/", "/../") {
		return fmt.Errorf("source: path %q must be relative and stay inside the repository", c.Path)
	}
	switch ep.Protocol {
	case "ssh":
		if c.Auth.SSHKey.IsZero() {
			return errors.New("source: ssh url needs auth.sshKey")
		}
		if c.Auth.KnownHostsFile == "" {
			return errors.New("source: ssh url needs auth.knownHostsFile; host keys are never accepted blindly")
		}
	case "http":
		if !c.Auth.Password.IsZero() {
			return errors.New("source: refusing to send credentials over plain http; use https")
		}
	case "https", "git", "file":
	default:
		return fmt.Errorf("source: unsupported url scheme %q", ep.Protocol)
	}
	if ep.Protocol != "ssh" && !c.Auth.SSHKey.IsZero() {
		return fmt.Errorf("source: auth.sshKey given for a %s url", ep.Protocol)
	}
	if ep.Protocol != "https" && ep.Protocol != "http" && !c.Auth.Password.IsZero() {
		return fmt.Errorf("source: auth.password given for a %s url", ep.Protocol)
	}
	switch c.Verify.Mode {
	case VerifyNone:
	case VerifyHead:
		if len(c.Verify.TrustedKeys) == 0 {
			return errors.New("source: verify mode head needs trusted keys")
		}
	default:
		return fmt.Errorf("source: unknown verify mode %q (want head or none)", c.Verify.Mode)
	}
	return nil
}
