package source_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/reconciler/source"
)

// FuzzWebhook sends the webhook receiver random bodies and headers: it
// must never panic, and it must trigger a poll exactly when the request
// is an authentic push — a POST whose X-Hub-Signature-256 is the body's
// HMAC-SHA256 with the secret, or, without that header, whose
// X-Gitlab-Token is the secret — and not a ping. sign asks the fuzz
// function to put the valid signature in, so that both sides of the check
// are exercised; a random signature never passes.
func FuzzWebhook(f *testing.F) {
	body := `{"ref":"refs/heads/main","after":"0123"}`
	f.Add([]byte(body), "", "", "push", "POST", true)
	f.Add([]byte(body), githubSig("other", body), "", "push", "POST", false)
	f.Add([]byte(body), "sha256=zz", "", "push", "POST", false)
	f.Add([]byte(body), "", hookSecret, "Push Hook", "POST", false)
	f.Add([]byte(body), "", hookSecret+" ", "Push Hook", "POST", false)
	f.Add([]byte(body), "", "", "ping", "POST", true)
	f.Add([]byte(body), "", "", "push", "GET", true)
	f.Add([]byte{}, "sha256=", "", "", "POST", false)
	f.Add([]byte("\x00\xff"), "", "", "push", "PUT", false)
	f.Fuzz(func(t *testing.T, body []byte, sig, token, event, method string, sign bool) {
		triggered := 0
		h, err := source.NewWebhook([]byte(hookSecret), func() { triggered++ })
		if err != nil {
			t.Fatal(err)
		}
		if !validMethod(method) {
			method = http.MethodPost
		}
		req := httptest.NewRequest(method, "/hook", bytes.NewReader(body))
		if sign {
			sig = githubSig(hookSecret, string(body))
		}
		for k, v := range map[string]string{"X-Hub-Signature-256": sig, "X-Gitlab-Token": token, "X-GitHub-Event": event} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		authentic := false
		switch {
		case sig != "":
			mac := hmac.New(sha256.New, []byte(hookSecret))
			mac.Write(body)
			got, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
			authentic = strings.HasPrefix(sig, "sha256=") && err == nil && hmac.Equal(got, mac.Sum(nil))
		case token != "":
			authentic = token == hookSecret
		}
		want := 0
		if method == http.MethodPost && authentic && event != "ping" && len(body) <= source.MaxWebhookBody {
			want = 1
		}
		if triggered != want {
			t.Fatalf("%s, signature %q, token %q, event %q, body %q: triggered %d times (status %d), want %d",
				method, sig, token, event, body, triggered, rec.Code, want)
		}
		if want == 0 && rec.Code == http.StatusAccepted {
			t.Fatalf("status 202 without a trigger")
		}
	})
}

// validMethod reports whether m is a token net/http accepts as a method.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}
