package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
)

// MaxWebhookBody is the largest webhook body read. GitHub's push events are
// far smaller; the HMAC covers the whole body, so a longer one is refused.
const MaxWebhookBody = 1 << 20

// NewWebhook returns a handler for push events from GitHub (signed with
// X-Hub-Signature-256, HMAC-SHA256 of the body) and GitLab (X-Gitlab-Token),
// both checked against secret in constant time. An authenticated event calls
// trigger, which must not block (Source.Trigger does not); the handler
// answers 202 at once. A request that fails the check gets 401 and triggers
// nothing. GitHub's ping event is answered 200 without a trigger.
func NewWebhook(secret []byte, trigger func()) (http.Handler, error) {
	if len(secret) == 0 {
		return nil, errors.New("webhook: empty secret")
	}
	if trigger == nil {
		return nil, errors.New("webhook: nil trigger")
	}
	return &webhook{secret: secret, trigger: trigger}, nil
}

type webhook struct {
	secret  []byte
	trigger func()
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if !h.authentic(r, body) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("X-GitHub-Event") == "ping" {
		w.WriteHeader(http.StatusOK)
		return
	}
	h.trigger()
	w.WriteHeader(http.StatusAccepted)
}

func (h *webhook) authentic(r *http.Request, body []byte) bool {
	if sig := r.Header.Get("X-Hub-Signature-256"); sig != "" {
		got, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
		if err != nil || !strings.HasPrefix(sig, "sha256=") {
			return false
		}
		mac := hmac.New(sha256.New, h.secret)
		mac.Write(body)
		return hmac.Equal(got, mac.Sum(nil))
	}
	if tok := r.Header.Get("X-Gitlab-Token"); tok != "" {
		// Compare digests so the comparison time does not depend on where
		// the strings differ, nor leak the secret's length.
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256(h.secret)
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return false
}
