package source_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/reconciler/source"
)

const hookSecret = "webhook-secret-9f8e7d"

func githubSig(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestWebhook(t *testing.T) {
	body := `{"ref":"refs/heads/main","after":"0123"}`
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		body    string
		code    int
		trigger bool
	}{
		{"github push", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSig(hookSecret, body)}, body, 202, true},
		{"github ping", "POST", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": githubSig(hookSecret, body)}, body, 200, false},
		{"github wrong secret", "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": githubSig("other", body)}, body, 401, false},
		{"github body changed", "POST", map[string]string{"X-Hub-Signature-256": githubSig(hookSecret, body)}, body + " ", 401, false},
		{"github not hex", "POST", map[string]string{"X-Hub-Signature-256": "sha256=zz"}, body, 401, false},
		{"github sha1 only", "POST", map[string]string{"X-Hub-Signature": "sha1=" + strings.Repeat("0", 40)}, body, 401, false},
		{"github unprefixed", "POST", map[string]string{"X-Hub-Signature-256": strings.TrimPrefix(githubSig(hookSecret, body), "sha256=")}, body, 401, false},
		{"gitlab push", "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hookSecret}, body, 202, true},
		{"gitlab wrong token", "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hookSecret + "x"}, body, 401, false},
		{"no signature", "POST", nil, body, 401, false},
		{"get", "GET", map[string]string{"X-Gitlab-Token": hookSecret}, "", 405, false},
		{"too large", "POST", map[string]string{"X-Gitlab-Token": hookSecret}, strings.Repeat("x", source.MaxWebhookBody+1), 413, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			h, err := source.NewWebhook([]byte(hookSecret), func() { n.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tt.method, "/hook", strings.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Errorf("status = %d, want %d", rec.Code, tt.code)
			}
			if got := n.Load() == 1; got != tt.trigger {
				t.Errorf("triggered = %v, want %v", got, tt.trigger)
			}
			if strings.Contains(rec.Body.String(), hookSecret) {
				t.Error("response contains the secret")
			}
		})
	}
	if _, err := source.NewWebhook(nil, func() {}); err == nil {
		t.Error("NewWebhook accepted an empty secret")
	}
}

// A burst of webhooks makes at most a couple of polls, and a pushed commit
// reaches the apply function well within a second of the hook.
func TestWebhookTriggersCoalescedPoll(t *testing.T) {
	r := newRepo(t)
	c1 := r.commitPush("first", map[string]string{"a.yaml": "1\n"})
	srv := newGitHTTP(t, r.root, "", "", false)
	s := newSource(t, source.Config{URL: srv.url(), Interval: time.Hour}, "")
	hook, err := source.NewWebhook([]byte(hookSecret), s.Trigger)
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()

	applied := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	var slow sync.Mutex // holds apply while hooks pile up
	go func() {
		done <- s.Run(ctx, func(_ context.Context, snap *source.Snapshot) error {
			slow.Lock()
			defer slow.Unlock()
			applied <- snap.Revision
			return nil
		})
	}()
	defer func() { cancel(); <-done }()
	if got := <-applied; got != c1 {
		t.Fatalf("applied %s, want %s", got, c1)
	}
	waitFor(t, func() bool { return s.LastGood() != nil })

	c2 := r.commitPush("second", map[string]string{"a.yaml": "2\n"})
	lists, packs := srv.infoRefs.Load(), srv.uploadPack.Load()
	slow.Lock()
	start := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", hookSrv.URL, strings.NewReader("{}"))
			req.Header.Set("X-Gitlab-Token", hookSecret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("hook status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	slow.Unlock()
	select {
	case got := <-applied:
		if got != c2 {
			t.Fatalf("applied %s, want %s", got, c2)
		}
		t.Logf("webhook to apply: %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("webhook did not trigger a poll")
	}
	time.Sleep(100 * time.Millisecond) // let a coalesced poll, if any, finish
	// A fetch lists the refs again before its upload-pack request.
	if got := (srv.infoRefs.Load() - lists) - (srv.uploadPack.Load() - packs); got < 1 || got > 2 {
		t.Errorf("50 webhooks made %d polls, want 1 or 2", got)
	}
}
