package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-dev/ferry/reconciler"
	"github.com/ferry-dev/ferry/reconciler/apply"
	"github.com/ferry-dev/ferry/reconciler/metrics"
	"github.com/ferry-dev/ferry/reconciler/source"
)

// httpDeps is what the daemon's HTTP endpoints read.
type httpDeps struct {
	r        *reconciler.Reconciler
	m        *metrics.Metrics
	secret   []byte
	leading  func() bool // nil without leader election
	interval time.Duration
	log      *slog.Logger
}

// serveHTTP serves /metrics, /healthz, /readyz and, with a webhook secret,
// /hook until ctx ends, and returns the address it listens on.
func serveHTTP(ctx context.Context, addr string, d httpDeps) (string, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.m.Handler())
	started := time.Now()
	// Alive while the loop finishes reconciles; a loop stuck longer than a
	// few intervals (and two minutes) is restarted by the kubelet.
	stale := max(5*d.interval, 2*time.Minute)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		last := d.r.LastReconcile()
		if last.IsZero() {
			last = started
		}
		if d.leading != nil && !d.leading() {
			fmt.Fprintln(w, "ok: standby")
			return
		}
		if age := time.Since(last); age > stale {
			http.Error(w, fmt.Sprintf("no reconcile finished for %s", age.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// Ready once plans are in force; a standby replica is ready too, so a
	// rollout does not wait for a lease it will never get.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if d.leading != nil && !d.leading() {
			fmt.Fprintln(w, "ok: standby")
			return
		}
		rev, err := d.r.Status()
		if rev == "" {
			msg := "no good plan commit yet"
			if err != nil {
				msg += ": " + err.Error()
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok:", rev)
	})
	if len(d.secret) > 0 {
		h, err := source.NewWebhook(d.secret, d.r.Trigger)
		if err != nil {
			return "", err
		}
		mux.Handle("POST /hook", h)
	} else {
		mux.HandleFunc("POST /hook", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "webhook receiver off: set "+envWebhookSecret, http.StatusNotFound)
		})
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return l.Addr().String(), nil
}

// driftRecorder posts drift as Kubernetes Events.
type driftRecorder interface {
	Drift(ctx context.Context, migration, cluster string, objects []string) error
}

// reportChanges counts the applier's changes in metrics and reports the
// drift it restored in the log and as Events.
func reportChanges(ctx context.Context, last map[string]map[string]apply.ChangeSet, m *metrics.Metrics, rec driftRecorder, log *slog.Logger) {
	for cluster, sets := range last {
		for migration, cs := range sets {
			var drifted []string
			for _, c := range cs {
				m.Applied(cluster, string(c.Action), 1)
				if c.Drift {
					drifted = append(drifted, c.ID.String())
				}
			}
			if len(drifted) == 0 {
				continue
			}
			log.Warn("drift restored: objects were changed by hand", "cluster", cluster, "migration", migration, "objects", drifted)
			if rec != nil {
				if err := rec.Drift(ctx, migration, cluster, drifted); err != nil {
					log.Warn("kubernetes events", "migration", migration, "error", err)
				}
			}
		}
	}
}

// daemonInfo is what `ferry run` tells `ferry status` about itself.
type daemonInfo struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Target is "directory" or "clusters"; Out the directory or kubeconfig.
	Target string `json:"target"`
	Out    string `json:"out"`
	// Readiness says whether backends' endpoints are checked before
	// traffic moves (not in directory mode).
	Readiness bool `json:"readiness"`
	// ApplyError is why the last apply failed (a conflict with another
	// field manager, an unreachable cluster); empty once one succeeds.
	ApplyError string    `json:"applyError,omitempty"`
	ApplyAt    time.Time `json:"applyAt,omitzero"`
}

const daemonFile = "daemon.json"

func writeDaemonInfo(stateDir string, d daemonInfo) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(stateDir, daemonFile), b, 0o644)
}

func readDaemonInfo(stateDir string) (daemonInfo, bool) {
	var d daemonInfo
	b, err := os.ReadFile(filepath.Join(stateDir, daemonFile))
	if err != nil || json.Unmarshal(b, &d) != nil {
		return d, false
	}
	return d, true
}
