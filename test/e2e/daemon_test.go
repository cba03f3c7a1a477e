package e2e

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/test/cluster"
	"github.com/ferry-dev/ferry/test/gitserver"
)

var trafficSplits = cluster.TrafficSplits

// daemon is a running `ferry run` process.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	base   string // http://addr of its endpoints
	exited chan struct{}
	err    error
}

// startDaemon starts the ferry binary with `run` and args, and waits until
// it serves HTTP.
func startDaemon(t testing.TB, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, exited: make(chan struct{})}
	d.cmd = exec.Command(ferryBin, append([]string{"run", "--http-addr", "127.0.0.1:0"}, args...)...)
	d.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`on (http://\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log.WriteString(line + "\n")
			d.mu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		d.err = d.cmd.Wait()
		pw.Close()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("ferry run's output:\n%s", d.logs())
		}
	})
	select {
	case d.base = <-addr:
	case <-d.exited:
		t.Fatalf("ferry run exited at start: %v\n%s", d.err, d.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry run does not serve HTTP after 30 s:\n%s", d.logs())
	}
	return d
}

func (d *daemon) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

func (d *daemon) kill() {
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// stop sends SIGTERM and returns the exit error (nil for exit 0).
func (d *daemon) stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.err
	case <-time.After(60 * time.Second):
		d.t.Fatalf("ferry run did not exit within 60 s of SIGTERM")
		return nil
	}
}

func (d *daemon) get(path string) (int, string) {
	resp, err := http.Get(d.base + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hook posts a push event signed with secret.
func (d *daemon) hook(secret string) int {
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest(http.MethodPost, d.base+"/hook", bytes.NewReader(body))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("X-GitHub-Event", "push")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (d *daemon) metric(name string) string {
	_, body := d.get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			return line
		}
	}
	return ""
}

func waitFor(t testing.TB, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// toWeight returns the percent the TrafficSplit shop/<svc> of cluster cl
// gives b, the migration's `to` side; -1 when there is no split.
func toWeight(t testing.TB, env *cluster.Env, cl, svc string) int64 {
	t.Helper()
	return env.MustToWeight(t, cl, "b", "shop", svc)
}

// resourceVersions lists the resourceVersion of every object ferry
// manages in namespaces shop and ferry-system of every cluster.
func resourceVersions(t testing.TB, env *cluster.Env) map[string]string {
	t.Helper()
	out := map[string]string{}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=ferry"}
	for _, cl := range env.Names() {
		c := env.Clusters[cl]
		ts, err := c.Dynamic.Resource(trafficSplits).Namespace("shop").List(t.Context(), sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ts.Items {
			out[cl+"/TrafficSplit/"+o.GetName()] = o.GetResourceVersion()
		}
		svcs, err := c.Client.CoreV1().Services("shop").List(t.Context(), sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range svcs.Items {
			out[cl+"/Service/"+o.Name] = o.ResourceVersion
		}
		cms, err := c.Client.CoreV1().ConfigMaps("ferry-system").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range cms.Items {
			out[cl+"/ConfigMap/"+o.Name] = o.ResourceVersion
		}
	}
	return out
}

func daemonPlan(services string) string {
	return `clusters: {a: {context: a}, b: {context: b}}
migrations:
  m:
    from: a
    to: b
    provider: linkerd
    steps: [0, 50, 100]
    soak: 1s
    window: {schedule: ["@every 1s"]}
    waves:
      - name: first
        maxConcurrent: 5
        services: [` + services + `]
`
}

// TestDaemonAppliesCommitsAndRefusesInvalid runs the ferry binary against
// two real API servers and a plan repository served by git http-backend,
// with a poll interval of a minute: services move on the window's ticks;
// a pushed commit announced by a signed webhook is applied on both clusters
// within seconds; an invalid commit changes nothing, and the metrics, the
// readiness endpoint and the log say why. SIGTERM ends it with exit 0.
func TestDaemonAppliesCommitsAndRefusesInvalid(t *testing.T) {
	env := cluster.StartT(t, "a", "b")
	env.Link(t)
	env.Serve(t, []string{"a", "b"}, "shop", "cart", "web", "api")
	repo := gitserver.Start(t)
	repo.CommitPush("plans", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web")})
	const secret = "hook-secret"
	d := startDaemon(t, []string{"FERRY_WEBHOOK_SECRET=" + secret},
		"--url", repo.URL(), "--kubeconfig", env.Kubeconfig, "--state-dir", t.TempDir(), "--interval", "1m")

	waitFor(t, "cart and web reach 100% on both clusters", 60*time.Second, func() bool {
		for _, cl := range []string{"a", "b"} {
			for _, svc := range []string{"cart", "web"} {
				if toWeight(t, env, cl, svc) != 100 {
					return false
				}
			}
		}
		return true
	})

	// A new service, announced by the webhook: applied long before the
	// next poll.
	repo.CommitPush("add api", map[string]string{"plan.yaml": daemonPlan("shop/cart, shop/web, shop/api")})
	pushed := time.Now()
	if c := d.hook(secret); c != http.StatusAccepted {
		t.Fatalf("webhook: %d, want 202", c)
	}
	waitFor(t, "api's split exists on both clusters", 30*time.Second, func() bool {
		return toWeight(t, env, "a", "api") >= 0 && toWeight(t, env, "b", "api") >= 0
	})
	t.Logf("commit pushed -> applied on 2 clusters: %s (webhook)", time.Since(pushed).Round(time.Millisecond))
	waitFor(t, "api reaches 100%", 60*time.Second, func() bool { return toWeight(t, env, "a", "api") == 100 })

	// An invalid commit: nothing changes anywhere.
	time.Sleep(2 * time.Second) // let the last completion settle
	before := resourceVersions(t, env)
	repo.CommitPush("broken steps", map[string]string{"plan.yaml": strings.Replace(daemonPlan("shop/cart"), "[0, 50, 100]", "[0, 100, 50]", 1)})
	if c := d.hook(secret); c != http.StatusAccepted {
		t.Fatalf("webhook: %d, want 202", c)
	}
	waitFor(t, "the refusal shows in the metrics", 30*time.Second, func() bool {
		return d.metric("ferry_plan_valid") == "ferry_plan_valid 0"
	})
	time.Sleep(2 * time.Second) // reconciles after the refusal change nothing either
	after := resourceVersions(t, env)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed after the invalid commit: resourceVersion %s -> %s", k, v, after[k])
		}
	}
	if len(after) != len(before) {
		t.Errorf("objects before %d, after %d", len(before), len(after))
	}
	if c, body := d.get("/readyz"); c != 200 {
		t.Errorf("/readyz %d %s: the last good commit is still in force", c, body)
	}
	if !strings.Contains(d.logs(), "steps[2]: 50 is not greater than the previous step 100") {
		t.Errorf("the log does not say why the commit was refused:\n%s", d.logs())
	}
	if err := d.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", err, d.logs())
	}
}
