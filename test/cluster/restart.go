package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Stop kills the cluster's kube-apiserver (SIGKILL, as a crash or a lost
// node would) and leaves its etcd running: clients get "connection
// refused" until Start. The test fails when the server does not stop.
//
// A SIGTERM, envtest's way, is no outage to test with: kube-apiserver
// stops accepting connections at once but drains its watches for longer
// than envtest's stop timeout.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	api := c.env.ControlPlane.GetAPIServer()
	pid, err := apiserverPID(api.SecureServing.Port)
	if err != nil {
		t.Fatalf("cluster %s: stop kube-apiserver: %v", c.Name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("cluster %s: kill kube-apiserver (pid %d): %v", c.Name, pid, err)
	}
	// envtest reaps it; then its Stop has nothing left to do.
	deadline := time.Now().Add(stopTimeout)
	for {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: kube-apiserver (pid %d) still there %s after SIGKILL", c.Name, pid, stopTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// envtest's waiter marks the process exited just after reaping it;
	// until then its Stop signals a process that is gone and fails.
	for {
		err := api.Stop()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: stop kube-apiserver: %v", c.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiserverPID finds the kube-apiserver serving on port among this
// machine's processes.
func apiserverPID(port string) (int, error) {
	if port == "" {
		return 0, errors.New("no secure port: not started")
	}
	flag := "--secure-port=" + port
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "kube-apiserver") {
			continue
		}
		for i, a := range args {
			if a == flag || (a == "--secure-port" && i+1 < len(args) && args[i+1] == port) {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no kube-apiserver process with %s", flag)
}

// Start starts the cluster's kube-apiserver again after Stop, on the same
// address, with the same certificates and the same etcd (so every object
// is still there), and returns when it is ready (/readyz: its CRDs served
// again). Clients made before the outage, and the Env's kubeconfig, keep
// working.
//
// The restarted server runs without its watch cache, so that a watch
// resumed from a resourceVersion of before the outage is served from
// etcd's history and replays what it missed; a fresh watch cache only
// knows revisions from its own start and answers such a watch with 410
// Gone.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	api := c.env.ControlPlane.GetAPIServer()
	api.Configure().Set("watch-cache", "false")
	// envtest reuses the port and the serving certificate of the first
	// start: SecurePort is kept, and an existing apiserver.crt is not
	// regenerated.
	if err := api.Start(); err != nil {
		t.Fatalf("cluster %s: restart kube-apiserver: %v", c.Name, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	var last error
	for {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return
		}
		last = fmt.Errorf("%w: %s", err, body)
		select {
		case <-ctx.Done():
			t.Fatalf("cluster %s: kube-apiserver not ready %s after restart: %v", c.Name, startTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// EtcdRevision returns the current revision of the cluster's etcd, which
// is the highest resourceVersion the API server handed out so far. It
// works while the API server is stopped: with no API server, nothing is
// written, so every object version written before Stop has a
// resourceVersion at most this.
func (c *Cluster) EtcdRevision(t testing.TB) int64 {
	t.Helper()
	u := c.env.ControlPlane.Etcd.URL
	if u == nil {
		t.Fatalf("cluster %s: etcd has no client URL", c.Name)
	}
	// etcd's JSON gateway to its KV API; the key is base64 "/".
	resp, err := http.Post(u.String()+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Lw==","count_only":true}`))
	if err != nil {
		t.Fatalf("cluster %s: etcd revision: %v", c.Name, err)
	}
	defer resp.Body.Close()
	var r struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("cluster %s: etcd revision: %s: %v", c.Name, resp.Status, err)
	}
	rev, err := strconv.ParseInt(r.Header.Revision, 10, 64)
	if err != nil {
		t.Fatalf("cluster %s: etcd revision %q: %v", c.Name, r.Header.Revision, err)
	}
	return rev
}
