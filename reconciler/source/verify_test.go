package source_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/reconciler/source"
)

// gpgKey makes an OpenPGP signing key in a private GNUPGHOME and returns
// the git arguments to sign with it and its armored public key.
func gpgKey(t *testing.T, r *repo, name string) (gitArgs []string, armored []byte, fpr string) {
	t.Helper()
	// A short path: gpg-agent's socket must fit in sun_path.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	env := append(r.env(), "GNUPGHOME="+home)
	t.Cleanup(func() {
		run(t, home, env, "gpgconf", "--kill", "all")
		os.RemoveAll(home)
	})
	run(t, home, env, "gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-gen-key", name+" <"+strings.ToLower(name)+"@example.com>", "ed25519", "sign", "never")
	for _, line := range strings.Split(run(t, home, env, "gpg", "--with-colons", "--list-keys"), "\n") {
		if strings.HasPrefix(line, "fpr:") && fpr == "" {
			fpr = strings.Split(line, ":")[9]
		}
	}
	armored = []byte(run(t, home, env, "gpg", "--armor", "--export", fpr))
	// git runs gpg; point it at this home through a wrapper script, since
	// each key lives in its own GNUPGHOME.
	wrapper := filepath.Join(home, "gpg.sh")
	script := "#!/bin/sh\nGNUPGHOME=" + home + " exec gpg \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=" + wrapper, "-c", "user.signingkey=" + fpr}, armored, fpr
}

// sshSigningKey makes an SSH key with ssh-keygen and returns the git
// arguments to sign with it and its public key line.
func sshSigningKey(t *testing.T) (gitArgs []string, pub string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	run(t, "", os.Environ(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", key)
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key}, strings.TrimSpace(string(b))
}

func (r *repo) signedCommit(signArgs []string, msg string, files map[string]string) string {
	r.t.Helper()
	r.write(files)
	r.git(r.work, "add", "-A")
	r.git(r.work, append(signArgs, "commit", "-q", "-S", "--allow-empty", "-m", msg)...)
	r.push("main")
	return r.git(r.work, "rev-parse", "HEAD")
}

func TestSignedCommits(t *testing.T) {
	r := newRepo(t)
	gpgTrusted, gpgPub, gpgFpr := gpgKey(t, r, "Trusted")
	gpgOther, _, _ := gpgKey(t, r, "Stranger")
	sshTrusted, sshPub := sshSigningKey(t)
	sshOther, _ := sshSigningKey(t)

	// An allowed_signers file (principal first) and an armored keyring.
	keysDir := t.TempDir()
	sshFile := filepath.Join(keysDir, "allowed_signers")
	pgpFile := filepath.Join(keysDir, "trusted.asc")
	os.WriteFile(sshFile, []byte("# signers\nada@example.com "+sshPub+"\n"), 0o644)
	os.WriteFile(pgpFile, gpgPub, 0o644)

	c1 := r.signedCommit(gpgTrusted, "gpg signed", map[string]string{"a.yaml": "1\n"})
	s := newSource(t, source.Config{URL: r.bare, Verify: source.Verify{
		Mode: source.VerifyHead, TrustedKeys: []string{pgpFile, sshFile},
	}}, "")
	snap := pollAccept(t, s, c1)
	if snap.Signer != gpgFpr {
		t.Errorf("Signer = %q, want %q", snap.Signer, gpgFpr)
	}

	c2 := r.signedCommit(sshTrusted, "ssh signed", map[string]string{"a.yaml": "2\n"})
	snap = pollAccept(t, s, c2)
	if !strings.HasPrefix(snap.Signer, "SHA256:") {
		t.Errorf("Signer = %q, want an SSH fingerprint", snap.Signer)
	}

	refused := func(name, rev string, wantErrs int, want ...string) {
		t.Helper()
		_, changed, err := s.Poll(context.Background())
		var re *source.RefusedError
		if changed || !errors.As(err, &re) || !errors.Is(err, source.ErrSignature) || re.Revision != rev {
			t.Fatalf("%s: poll = %v, %v; want a signature refusal of %s", name, changed, err, rev)
		}
		if len(re.Errs) != wantErrs {
			t.Errorf("%s: %d reasons, want %d: %v", name, len(re.Errs), wantErrs, re)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
		if got := s.LastGood().Revision; got != c2 {
			t.Errorf("%s: LastGood = %s, want %s", name, got, c2)
		}
	}

	// Every reason is reported: the missing signature and the oversized file.
	big := strings.Repeat("x", source.MaxFileSize+1)
	c3 := r.commitPush("unsigned", map[string]string{"big.yaml": big})
	refused("unsigned", c3, 2, "not signed", "big.yaml", "over the limit")

	c4 := r.signedCommit(gpgOther, "stranger gpg", map[string]string{"big.yaml": ""})
	refused("untrusted gpg", c4, 1, "not made by a trusted key")

	c5 := r.signedCommit(sshOther, "stranger ssh", map[string]string{"a.yaml": "5\n"})
	refused("untrusted ssh", c5, 1, "is not trusted")

	c6 := r.signedCommit(sshTrusted, "back to trusted", map[string]string{"a.yaml": "6\n"})
	pollAccept(t, s, c6)
}

func TestSSHSignatureNamespace(t *testing.T) {
	// A signature made for another namespace (say, a signed file) must not
	// pass as a commit signature.
	r := newRepo(t)
	signArgs, pub := sshSigningKey(t)
	keyFile := strings.TrimPrefix(signArgs[3], "user.signingkey=")
	msg := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(msg, []byte("hello"), 0o644)
	run(t, "", os.Environ(), "ssh-keygen", "-q", "-Y", "sign", "-f", keyFile, "-n", "file", msg)
	sig, err := os.ReadFile(msg + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	err = source.VerifySSHSignatureForTest(sig, []byte("hello"), "git", pub)
	if err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("verify with wrong namespace = %v", err)
	}
	if err := source.VerifySSHSignatureForTest(sig, []byte("hello"), "file", pub); err != nil {
		t.Errorf("verify = %v", err)
	}
	if err := source.VerifySSHSignatureForTest(sig, []byte("hellO"), "file", pub); err == nil {
		t.Error("tampered message verified")
	}
	_ = r
}
