package cli

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/test/gitserver"
)

const runPlan = `clusters: {onprem: {}, eks: {}}
migrations:
  m:
    from: onprem
    to: eks
    provider: linkerd
    steps: [0, 50, 100]
    soak: 1s
    window: {schedule: ["@every 1s"]}
    waves: [{name: w, services: [shop/cart]}]
`

// syncBuffer is a bytes.Buffer safe for the daemon's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func hook(t *testing.T, url string, secret []byte) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if secret != nil {
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	req.Header.Set("X-GitHub-Event", "push")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunConfigEndpointsWebhook runs the daemon in-process from a config
// file, in directory mode: its endpoints answer, the service reaches 100%
// in the rendered output, a signed webhook brings a new commit in at once,
// and an invalid commit is refused — the metrics, /readyz and the rendered
// files say the last good commit stays in force. Cancelling stops it with
// exit 0.
func TestRunConfigEndpointsWebhook(t *testing.T) {
	repo := gitRepo(t, map[string]string{"plan.yaml": runPlan})
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfg := filepath.Join(dir, "ferry.yaml")
	// A long poll interval: only the webhook can bring the next commit in
	// quickly.
	conf := "url: file://" + repo + "\nbranch: main\nstate-dir: " + filepath.Join(dir, "state") +
		"\nout: " + out + "\ninterval: 1s\nhttp-addr: 127.0.0.1:0\nlog-format: json\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := []byte("s3cret")
	t.Setenv(envWebhookSecret, string(secret))

	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		root := NewRoot(&stdout, &stderr)
		root.SetArgs([]string{"run", "--config", cfg})
		done <- root.ExecuteContext(ctx)
	}()
	var base string
	eventually(t, "the daemon says where it serves HTTP:\n"+stderr.String(), 20*time.Second, func() bool {
		m := regexp.MustCompile(`on (http://\S+)`).FindStringSubmatch(stderr.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	eventually(t, "/readyz is 200", 20*time.Second, func() bool { c, _ := get(t, base+"/readyz"); return c == 200 })
	if c, _ := get(t, base+"/healthz"); c != 200 {
		t.Errorf("/healthz: %d", c)
	}
	split := filepath.Join(out, "onprem", "manifests.yaml")
	eventually(t, "cart reaches 100% in "+split, 30*time.Second, func() bool {
		b, _ := os.ReadFile(split)
		return strings.Contains(string(b), "service: cart-local-eks\n    weight: 100")
	})
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{`ferry_service_weight_percent{migration="m",service="shop/cart"} 100`, "ferry_plan_valid 1", "ferry_reconcile_duration_seconds_count", "ferry_leader 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if c := hook(t, base+"/hook", nil); c != http.StatusUnauthorized {
		t.Errorf("unsigned webhook: %d, want 401", c)
	}

	// An invalid commit, announced by a signed webhook.
	bad := strings.Replace(runPlan, "[0, 50, 100]", "[0, 100, 50]", 1)
	if err := os.WriteFile(filepath.Join(repo, "plan.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCommit(t, repo, "invalid steps")
	if c := hook(t, base+"/hook", secret); c != http.StatusAccepted {
		t.Fatalf("signed webhook: %d, want 202", c)
	}
	eventually(t, "the refusal shows in the metrics", 20*time.Second, func() bool {
		_, m := get(t, base+"/metrics")
		return strings.Contains(m, "ferry_plan_valid 0") && strings.Contains(m, "ferry_plan_refused_total 1")
	})
	if c, body := get(t, base+"/readyz"); c != 200 {
		t.Errorf("/readyz after a refused commit: %d %s; the last good commit is still in force", c, body)
	}
	if b, _ := os.ReadFile(split); !strings.Contains(string(b), "service: cart-local-eks\n    weight: 100") {
		t.Errorf("the refused commit changed the rendered output:\n%s", b)
	}
	if !strings.Contains(stderr.String(), "steps[2]: 50 is not greater than the previous step 100") {
		t.Errorf("the log does not say why the commit was refused:\n%s", stderr.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel, want nil (exit 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop within 30 s of cancel")
	}
}

// gitCommit commits everything in dir.
func gitCommit(t *testing.T, dir, msg string) {
	t.Helper()
	gitRun(t, dir, "add", "-A")
	gitRun(t, dir, "commit", "-q", "-m", msg)
}

// gitRun runs git in dir, isolated from the machine's configuration.
func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestRunConfigFileErrors: unknown settings and bad values are all
// reported, with the file and line, and exit 2.
func TestRunConfigFileErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(cfg, []byte("url: file:///nowhere\nstate_dir: x\ninterval: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--config", cfg}, &stdout, &stderr)
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	for _, want := range []string{cfg + `:2: unknown setting "state_dir"`, cfg + `:3: interval: "soon"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestRunPublishesToGit: in directory mode with --out-git-url, every step
// is committed and pushed to the branch of a repository served by git
// http-backend, where Argo CD or Flux would pick it up.
func TestRunPublishesToGit(t *testing.T) {
	plansRepo := gitRepo(t, map[string]string{"plan.yaml": runPlan})
	out := gitserver.Start(t)
	out.AllowPush()
	dir := t.TempDir()
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		root := NewRoot(&stdout, &stderr)
		root.SetArgs([]string{"run", "--url", "file://" + plansRepo, "--state-dir", filepath.Join(dir, "state"),
			"--out", filepath.Join(dir, "clone"), "--out-git-url", out.URL(), "--out-git-branch", "rendered",
			"--interval", "1s", "--http-addr", ""})
		done <- root.ExecuteContext(ctx)
	}()
	branch := func() string {
		o, err := exec.Command("git", "ls-remote", out.URL(), "refs/heads/rendered").Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(o))
	}
	eventually(t, "the render is pushed to branch rendered\n"+stderr.String(), 20*time.Second, func() bool { return branch() != "" })
	check := filepath.Join(dir, "check")
	eventually(t, "cart reaches 100% on the pushed branch", 30*time.Second, func() bool {
		_ = os.RemoveAll(check)
		if err := exec.Command("git", "clone", "-q", "-b", "rendered", out.URL(), check).Run(); err != nil {
			return false
		}
		b, _ := os.ReadFile(filepath.Join(check, "onprem", "manifests.yaml"))
		return strings.Contains(string(b), "service: cart-local-eks\n    weight: 100")
	})
	o, _ := exec.Command("git", "-C", check, "log", "--format=%an %s").Output()
	// One commit per render that changed: 50% and 100%, and 0% when the
	// first reconcile did not promote at once.
	if n := strings.Count(string(o), "ferry ferry: rendered overlays of eks, onprem"); n < 2 || n > 3 {
		t.Errorf("%d ferry commits on the branch, want one per step (2 or 3):\n%s", n, o)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
}

// TestRunMemoryLimit: --memory-limit sets the runtime's soft limit unless
// GOMEMLIMIT is set, and a bad size is a usage error.
func TestRunMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "1GiB") // the operator's setting wins
	if err := setMemoryLimit("80MiB"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("GOMEMLIMIT set, yet the limit changed to %d", got)
	}
	os.Unsetenv("GOMEMLIMIT")
	if err := setMemoryLimit("80MiB"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 80<<20 {
		t.Errorf("limit %d, want %d", got, 80<<20)
	}
	if err := setMemoryLimit("lots"); err == nil || !strings.Contains(err.Error(), `--memory-limit "lots"`) {
		t.Errorf("bad size: %v", err)
	}
}
