package prom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultBinary is where the Debian package installs Prometheus.
const DefaultBinary = "/usr/bin/prometheus"

// ScrapeInterval is how often Prometheus scrapes the workloads.
const ScrapeInterval = time.Second

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Binary returns the Prometheus binary tests run: $FERRY_PROMETHEUS, or
// DefaultBinary.
func Binary() string {
	if b := os.Getenv("FERRY_PROMETHEUS"); b != "" {
		return b
	}
	return DefaultBinary
}

// Scrape is one target of a Server: the job name, the workload's address
// and the labels Prometheus adds to its series (e.g. cluster).
type Scrape struct {
	Job    string
	Addr   string
	Labels map[string]string
}

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL of its HTTP API, http://127.0.0.1:port.
	URL string

	cmd      *exec.Cmd
	log      *lockedBuffer
	exited   chan struct{}
	stopOnce sync.Once
}

// Start starts Prometheus scraping targets and returns once it is ready and
// has scraped every target once. It fails the test when the binary is
// missing or Prometheus does not come up, and stops it at cleanup.
func Start(t testing.TB, targets ...Scrape) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("prometheus: %s not found: run `apt-get install -y prometheus` (or set FERRY_PROMETHEUS)", bin)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, config(targets), 0o644); err != nil {
		t.Fatal(err)
	}
	var s *Server
	var err error
	// The free port may be taken between asking and binding; try again.
	for range 3 {
		s, err = start(bin, dir, cfg)
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.waitScraped(ctx, len(targets)); err != nil {
		t.Fatalf("prometheus: %v\n%s", err, s.log.tail(20))
	}
	return s
}

func start(bin, dir, cfg string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{URL: "http://" + addr, log: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Its own process group, so that a stop reaches nothing else.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\n%s", err, s.log.tail(20))
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// config writes a Prometheus configuration scraping targets every second.
func config(targets []Scrape) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		ScrapeInterval, ScrapeInterval, ScrapeInterval)
	if len(targets) == 0 {
		return b.Bytes()
	}
	b.WriteString("scrape_configs:\n")
	jobs := map[string][]Scrape{}
	var order []string
	for _, t := range targets {
		if _, ok := jobs[t.Job]; !ok {
			order = append(order, t.Job)
		}
		jobs[t.Job] = append(jobs[t.Job], t)
	}
	for _, job := range order {
		fmt.Fprintf(&b, "  - job_name: %q\n    static_configs:\n", job)
		for _, t := range jobs[job] {
			fmt.Fprintf(&b, "      - targets: [%q]\n", t.Addr)
			if len(t.Labels) > 0 {
				b.WriteString("        labels:\n")
				keys := make([]string, 0, len(t.Labels))
				for k := range t.Labels {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(&b, "          %s: %q\n", k, t.Labels[k])
				}
			}
		}
	}
	return b.Bytes()
}

func (s *Server) waitReady(ctx context.Context) error {
	for {
		select {
		case <-s.exited:
			return errors.New("exited before it was ready")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s", startTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) waitScraped(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	want := float64(n)
	return s.Wait(ctx, "count(up == 1)", func(v float64) bool { return v >= want })
}

// Wait polls the instant query q until cond holds for its single value.
func (s *Server) Wait(ctx context.Context, q string, cond func(float64) bool) error {
	var last error
	for {
		v, err := s.Query(ctx, q)
		if err == nil && cond(v) {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("%s = %g", q, v)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v", q, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitT is Wait that fails the test after timeout.
func (s *Server) WaitT(t testing.TB, q string, cond func(float64) bool, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Wait(ctx, q, cond); err != nil {
		t.Fatalf("prometheus: %v", err)
	}
}

// Query runs an instant query and returns the value of its single sample.
// It is the harness's own small client, independent of the code under
// test.
func (s *Server) Query(ctx context.Context, q string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, errors.New(r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("%d samples", len(r.Data.Result))
	}
	str, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(str, 64)
}

// Stop stops Prometheus (SIGTERM, then SIGKILL) and waits for it to exit.
// It is safe to call more than once; Start registers it as a cleanup.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Log returns the last lines Prometheus wrote.
func (s *Server) Log() string { return s.log.tail(50) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
