package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Timeouts of one cluster's start and stop. Starting is CPU-bound and
// clusters start in parallel, so the start timeout leaves room for a busy
// 2-core machine (go test builds other packages meanwhile).
const (
	startTimeout = 90 * time.Second
	stopTimeout  = 20 * time.Second
)

// Env is a set of running clusters.
type Env struct {
	// Clusters maps each cluster's name to it.
	Clusters map[string]*Cluster
	// Kubeconfig is the path of a kubeconfig file with one context per
	// cluster, named after it, authenticating as the cluster admin; the
	// current context is the first cluster's. Stop removes it.
	Kubeconfig string

	names    []string
	dir      string
	stopOnce sync.Once
	stopErr  error
}

// Cluster is one API server with its etcd.
type Cluster struct {
	Name string
	// Config authenticates as an administrator (group system:masters) with
	// a client certificate.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface

	env *envtest.Environment
}

// Names returns the clusters' names in the order given to Start.
func (e *Env) Names() []string { return slices.Clone(e.names) }

// Start starts one cluster per name, in parallel, and returns when every API
// server is healthy and serves every provider CRD. Names must be distinct
// DNS labels. It returns an error wrapping ErrNoBinaries when test/testbin.sh
// has not been run. The caller must call Stop.
func Start(ctx context.Context, names ...string) (*Env, error) {
	if len(names) == 0 {
		return nil, errors.New("start clusters: no names")
	}
	for i, n := range names {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return nil, fmt.Errorf("start clusters: name %q: %s", n, strings.Join(errs, "; "))
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("start clusters: name %q given twice", n)
		}
	}
	apiserver, etcd, err := Binaries()
	if err != nil {
		return nil, err
	}
	crdList, err := loadCRDs()
	if err != nil {
		return nil, fmt.Errorf("load CRDs: %w", err)
	}
	quietControllerRuntime()
	removeStaleDirs()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}

	env := &Env{Clusters: make(map[string]*Cluster, len(names)), names: slices.Clone(names), dir: dir}
	if apiserver, err = orphanGuard(dir, apiserver); err == nil {
		etcd, err = orphanGuard(dir, etcd)
	}
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, name := range names {
		wg.Go(func() {
			c, err := startCluster(ctx, name, filepath.Join(dir, name), apiserver, etcd, crdList)
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				env.Clusters[name] = c
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("cluster %s: %w", name, err))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = env.Stop()
		return nil, err
	}
	env.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := env.writeKubeconfig(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return env, nil
}

// StartT starts clusters for a test, fails the test when they do not start
// (never skips it: a missing build is a setup error to fix), and stops them
// when the test and its subtests end.
func StartT(t testing.TB, names ...string) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*startTimeout)
	defer cancel()
	env, err := Start(ctx, names...)
	if err != nil {
		t.Fatalf("start clusters %s: %v", strings.Join(names, ", "), err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop clusters: %v", err)
		}
	})
	return env
}

func startCluster(ctx context.Context, name, dir, apiserver, etcd string, crdList []*apiextensionsv1.CustomResourceDefinition) (*Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &lockedWriter{w: &bytes.Buffer{}}
	te := &envtest.Environment{
		UseExistingCluster:       new(false),
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}
	// Certificates and etcd's data live under the Env's directory, so that
	// one RemoveAll cleans up, even after a test process that was killed.
	certDir, dataDir := filepath.Join(dir, "certs"), filepath.Join(dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	api := te.ControlPlane.GetAPIServer()
	api.Path, api.CertDir, api.Out, api.Err = apiserver, certDir, w, w
	te.ControlPlane.Etcd = &envtest.Etcd{Path: etcd, DataDir: dataDir, Out: w, Err: w}

	// envtest.Start has no context; it gives up after startTimeout.
	cfg, err := te.Start()
	c := &Cluster{Name: name, env: te}
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("start control plane: %w%s", err, w.tail(20))
	}
	cfg.UserAgent = "ferry-test"
	c.Config = cfg
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return c, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return c, err
	}
	ictx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := installCRDs(ictx, cfg, crdList); err != nil {
		return c, fmt.Errorf("install CRDs: %w", err)
	}
	return c, nil
}

// Stop stops every cluster and removes the kubeconfig. It may be called more
// than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		for name, c := range e.Clusters {
			wg.Go(func() {
				if err := c.env.Stop(); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("cluster %s: stop: %w", name, err))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, err)
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// NewUser returns a config for the cluster that authenticates as user, in
// groups, with a client certificate signed by the cluster's CA. The user has
// no permissions until a RoleBinding or ClusterRoleBinding grants some.
func (c *Cluster) NewUser(user string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: user, Groups: groups}, rest.CopyConfig(c.Config))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: add user %s: %w", c.Name, user, err)
	}
	cfg := u.Config()
	cfg.UserAgent = c.Config.UserAgent
	return cfg, nil
}

// quietControllerRuntime gives controller-runtime's global logger, which
// envtest logs through, a sink that drops everything. Left unset, the first
// envtest message after the process's first 30 seconds prints a warning with
// a goroutine dump that reads like a test failure. A test that wants
// controller-runtime's logs calls ctrllog.SetLogger after Start.
var quietControllerRuntime = sync.OnceFunc(func() { ctrllog.SetLogger(logr.Discard()) })

const dirPrefix = "ferry-clusters-"

// removeStaleDirs removes the directories of Envs whose test process died
// without calling Stop.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// orphanGuard returns the path of a wrapper, written into dir, that runs bin
// so that the kernel kills it when the test process dies without stopping it
// (an interrupt, a test timeout): envtest puts its processes in their own
// process group, where a Ctrl-C does not reach them. Without setpriv
// (util-linux) it returns bin.
func orphanGuard(dir, bin string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return bin, nil
	}
	wrapper := filepath.Join(dir, "bin", filepath.Base(bin))
	if err := os.MkdirAll(filepath.Dir(wrapper), 0o755); err != nil {
		return "", err
	}
	script := "#!/bin/sh\nexec " + shellQuote(setpriv) + " --pdeathsig KILL -- " + shellQuote(bin) + ` "$@"` + "\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return "", err
	}
	return wrapper, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeKubeconfig writes e.Kubeconfig with one cluster, user and context per
// cluster, credentials embedded, mode 0600.
func (e *Env) writeKubeconfig() error {
	kc := clientcmdapi.NewConfig()
	for _, name := range e.names {
		cfg := e.Clusters[name].Config
		kc.Clusters[name] = &clientcmdapi.Cluster{
			Server:                   cfg.Host,
			CertificateAuthorityData: cfg.CAData,
		}
		kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
			ClientCertificateData: cfg.CertData,
			ClientKeyData:         cfg.KeyData,
		}
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	}
	kc.CurrentContext = e.names[0]
	if err := clientcmd.WriteToFile(*kc, e.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// lockedWriter collects a process's output from its stdout and stderr
// copiers, and keeps only the last part.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

const maxLog = 64 << 10

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(p)
	if l.w.Len() > 2*maxLog {
		b := slices.Clone(l.w.Bytes()[l.w.Len()-maxLog:])
		l.w.Reset()
		l.w.Write(b)
	}
	return len(p), nil
}

// tail returns the last n lines of the output, prefixed for an error message.
func (l *lockedWriter) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.w.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "\ncontrol plane output (last lines):\n\t" + strings.Join(lines, "\n\t")
}
