package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The versions test/testbin.sh builds; TestVersionsMatchTestbin keeps them
// equal to the ones written in the script.
const (
	KubernetesVersion = "v1.36.3"
	EtcdVersion       = "v3.6.16"
)

// ErrNoBinaries is returned when kube-apiserver or etcd has not been built.
var ErrNoBinaries = errors.New(`test binaries missing: run "make testbin" to build kube-apiserver and etcd (about 8 minutes, once)`)

// Dir returns the directory testbin.sh builds into:
// ${FERRY_TESTBIN:-$HOME/.cache/ferry/testbin}/k8s-<KubernetesVersion>-etcd-<EtcdVersion>.
func Dir() string {
	root := os.Getenv("FERRY_TESTBIN")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		root = filepath.Join(home, ".cache", "ferry", "testbin")
	}
	return filepath.Join(root, "k8s-"+KubernetesVersion+"-etcd-"+EtcdVersion)
}

// Binaries returns the paths of the built kube-apiserver and etcd, and an
// error wrapping ErrNoBinaries when either is missing.
func Binaries() (apiserver, etcd string, err error) {
	dir := Dir()
	apiserver = filepath.Join(dir, "kube-apiserver")
	etcd = filepath.Join(dir, "etcd")
	for _, p := range []string{apiserver, etcd} {
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%w: no executable %s", ErrNoBinaries, p)
		}
	}
	return apiserver, etcd, nil
}

// CRDDir returns the directory of the CRDs that testbin.sh extracts from the
// providers' Go modules, one sub-directory per source.
func CRDDir() string {
	return filepath.Join(Dir(), "crds")
}
