package events

import (
	"time"

	"github.com/ferry-dev/ferry/reconciler/state"
)

// SetNow replaces the recorder's clock; call it before the first post.
func (r *Recorder) SetNow(now func() time.Time) { r.now = now }

// Translate exposes kubeEvent to the tests.
func Translate(e state.Event) (typ, reason, note string, ok bool) {
	k, ok := kubeEvent(e)
	return k.typ, k.reason, k.note, ok
}
