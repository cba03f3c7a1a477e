package source

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

const (
	pgpKeyHeader = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpSigHeader = "-----BEGIN PGP SIGNATURE-----"
	sshSigHeader = "-----BEGIN SSH SIGNATURE-----"
	sshSigFooter = "-----END SSH SIGNATURE-----"
	// sshNamespace is the namespace git signs commits in (ssh-keygen -Y sign -n git).
	sshNamespace = "git"
)

// keyring is the set of keys trusted to sign commits.
type keyring struct {
	pgp []string        // armored blocks, one keyring each
	ssh []ssh.PublicKey // authorized_keys or allowed_signers entries
}

// loadKeyring reads trusted keys from files; see Verify.TrustedKeys.
func loadKeyring(files []string) (*keyring, error) {
	k := &keyring{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trusted keys: %w", err)
		}
		if err := k.add(b); err != nil {
			return nil, fmt.Errorf("trusted keys %s: %w", f, err)
		}
	}
	if len(k.pgp) == 0 && len(k.ssh) == 0 {
		return nil, errors.New("trusted keys: no key found")
	}
	return k, nil
}

func (k *keyring) add(b []byte) error {
	s := string(b)
	if strings.Contains(s, pgpKeyHeader) {
		// openpgp.ReadArmoredKeyRing reads only the first armored block, so
		// each block is kept as its own keyring.
		for _, part := range strings.Split(s, pgpKeyHeader)[1:] {
			k.pgp = append(k.pgp, pgpKeyHeader+part)
		}
		return nil
	}
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// ParseAuthorizedKey skips a leading options field, which also covers
		// the principals field of an allowed_signers line.
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			if f := strings.Fields(line); len(f) > 2 {
				pub, _, _, _, err = ssh.ParseAuthorizedKey([]byte(strings.Join(f[1:], " ")))
			}
		}
		if err != nil {
			return fmt.Errorf("line %d: not an OpenPGP key block nor an SSH public key", i+1)
		}
		k.ssh = append(k.ssh, pub)
	}
	return nil
}

// verify checks that c carries a signature by a trusted key and returns that
// key's fingerprint. Errors wrap ErrSignature.
func (k *keyring) verify(c *object.Commit) (string, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	switch {
	case sig == "":
		return "", fmt.Errorf("%w: commit is not signed", ErrSignature)
	case strings.HasPrefix(sig, sshSigHeader):
		payload := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(payload); err != nil {
			return "", err
		}
		r, err := payload.Reader()
		if err != nil {
			return "", err
		}
		msg, err := io.ReadAll(r)
		if err != nil {
			return "", err
		}
		fp, err := verifySSHSig([]byte(sig), msg, sshNamespace, k.ssh)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrSignature, err)
		}
		return fp, nil
	case strings.HasPrefix(sig, pgpSigHeader):
		var last error = errors.New("no OpenPGP key is trusted")
		for _, kr := range k.pgp {
			e, err := c.Verify(kr)
			if err == nil {
				return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)), nil
			}
			last = err
		}
		return "", fmt.Errorf("%w: OpenPGP signature not made by a trusted key: %w", ErrSignature, last)
	}
	return "", fmt.Errorf("%w: unsupported signature format", ErrSignature)
}

// verifySSHSig checks an armored SSH signature (OpenSSH PROTOCOL.sshsig, as
// made by `ssh-keygen -Y sign` and git's gpg.format=ssh) over msg, made in
// namespace by one of trusted. It returns the key's SHA256 fingerprint.
func verifySSHSig(armored, msg []byte, namespace string, trusted []ssh.PublicKey) (string, error) {
	blob, err := unarmorSSHSig(armored)
	if err != nil {
		return "", err
	}
	var env struct {
		Magic     [6]byte
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlgo  string
		Signature []byte
	}
	if err := ssh.Unmarshal(blob, &env); err != nil {
		return "", fmt.Errorf("ssh signature: %w", err)
	}
	if string(env.Magic[:]) != "SSHSIG" {
		return "", errors.New("ssh signature: bad magic")
	}
	if env.Version != 1 {
		return "", fmt.Errorf("ssh signature: unsupported version %d", env.Version)
	}
	if env.Namespace != namespace {
		return "", fmt.Errorf("ssh signature: namespace %q, want %q", env.Namespace, namespace)
	}
	var h hash.Hash
	switch env.HashAlgo {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return "", fmt.Errorf("ssh signature: unsupported hash %q", env.HashAlgo)
	}
	pub, err := ssh.ParsePublicKey(env.PublicKey)
	if err != nil {
		return "", fmt.Errorf("ssh signature: public key: %w", err)
	}
	fp := ssh.FingerprintSHA256(pub)
	if !trustedSSHKey(pub, trusted) {
		return "", fmt.Errorf("ssh signature: key %s is not trusted", fp)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(env.Signature, &sig); err != nil {
		return "", fmt.Errorf("ssh signature: %w", err)
	}
	if sig.Format == ssh.KeyAlgoRSA { // RSA with SHA-1, refused by OpenSSH too
		return "", errors.New("ssh signature: ssh-rsa (SHA-1) signatures are not accepted")
	}
	h.Write(msg)
	signed := ssh.Marshal(struct {
		Namespace string
		Reserved  string
		HashAlgo  string
		Hash      []byte
	}{env.Namespace, env.Reserved, env.HashAlgo, h.Sum(nil)})
	signed = append([]byte("SSHSIG"), signed...)
	if err := pub.Verify(signed, &sig); err != nil {
		return "", fmt.Errorf("ssh signature by %s does not match the commit: %w", fp, err)
	}
	return fp, nil
}

func trustedSSHKey(pub ssh.PublicKey, trusted []ssh.PublicKey) bool {
	m := pub.Marshal()
	for _, t := range trusted {
		if bytes.Equal(m, t.Marshal()) {
			return true
		}
	}
	return false
}

func unarmorSSHSig(armored []byte) ([]byte, error) {
	s := strings.TrimSpace(string(armored))
	if !strings.HasPrefix(s, sshSigHeader) || !strings.HasSuffix(s, sshSigFooter) {
		return nil, errors.New("ssh signature: not armored")
	}
	body := strings.TrimSuffix(strings.TrimPrefix(s, sshSigHeader), sshSigFooter)
	body = strings.Join(strings.Fields(body), "")
	blob, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("ssh signature: %w", err)
	}
	return blob, nil
}
