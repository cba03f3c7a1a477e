package source

import "golang.org/x/crypto/ssh"

// VerifySSHSignatureForTest exposes verifySSHSig to the external tests.
func VerifySSHSignatureForTest(armored, msg []byte, namespace, trustedKey string) error {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(trustedKey))
	if err != nil {
		return err
	}
	_, err = verifySSHSig(armored, msg, namespace, []ssh.PublicKey{pub})
	return err
}
