package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/reconciler/state"
)

// Controller is the reportingController of ferry's Events.
const Controller = "ferry"

// CoalesceWindow is how long an identical Event is not posted again.
const CoalesceWindow = time.Minute

// forgetAfter is how long an Event is remembered for coalescing after it
// was last written: beyond the API server's default event TTL (one hour)
// it would be gone anyway.
const forgetAfter = time.Hour

// Limits of events.k8s.io/v1 validation.
const (
	maxNote     = 1024
	maxInstance = 128
)

// Labels and annotations of a migration's ConfigMap.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	LabelPart           = "ferry.dev/part"
	AnnotationMigration = "ferry.dev/migration"
)

// Recorder posts Events regarding one ConfigMap per migration. It is safe
// for concurrent use.
type Recorder struct {
	client    kubernetes.Interface
	namespace string
	instance  string
	log       *slog.Logger
	now       func() time.Time

	// refMu serializes finding or creating the ConfigMaps.
	refMu sync.Mutex
	refs  map[string]corev1.ObjectReference

	mu   sync.Mutex
	seen map[key]*posted
}

type key struct{ migration, reason, note string }

// posted is an Event written to the API server.
type posted struct {
	name    string
	written time.Time // last create or update
	count   int32     // occurrences, written or not
}

// New returns a recorder that posts into namespace, which must exist, as
// instance (the reportingInstance: the replica's identity, at most 128
// characters).
func New(client kubernetes.Interface, namespace, instance string, logger *slog.Logger) *Recorder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(instance) > maxInstance {
		instance = instance[:maxInstance]
	}
	if instance == "" {
		instance = Controller
	}
	return &Recorder{
		client: client, namespace: namespace, instance: instance, log: logger, now: time.Now,
		refs: map[string]corev1.ObjectReference{}, seen: map[key]*posted{},
	}
}

// ConfigMapName returns the name of the ConfigMap a migration's Events
// regard.
func ConfigMapName(migration string) string {
	return "ferry-migration." + strings.TrimPrefix(state.ConfigMapName(migration), "ferry-")
}

// Record posts an Event for each event of the history worth one: moves,
// completions, holds, pauses and resumes, requests and approvals, edited
// steps and removed services. Gate rounds and waits are left to the
// history. It returns the errors of the posts that failed.
func (r *Recorder) Record(ctx context.Context, migration string, evs []state.Event) error {
	var errs []error
	for _, e := range evs {
		k, ok := kubeEvent(e)
		if !ok {
			continue
		}
		if err := r.post(ctx, migration, k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Drift posts a Warning that ferry restored objects in cluster that had
// been changed outside it: the IDs (apply.ObjectID.String()) of the
// changes of an apply.ChangeSet with Drift set.
func (r *Recorder) Drift(ctx context.Context, migration, cluster string, objects []string) error {
	if len(objects) == 0 {
		return nil
	}
	head := fmt.Sprintf("cluster %s: restored %d object(s) changed outside ferry: ", cluster, len(objects))
	note := head
	for i, o := range objects {
		sep := ", "
		if i == 0 {
			sep = ""
		}
		more := fmt.Sprintf(" and %d more", len(objects)-i)
		if len(note)+len(sep)+len(o)+len(" and 9999 more") > maxNote {
			note += more
			break
		}
		note += sep + o
	}
	return r.post(ctx, migration, kube{typ: corev1.EventTypeWarning, reason: "Drift", action: "Restore", note: note})
}

// kube is the content of one Event.
type kube struct {
	typ, reason, action, note string
}

// kubeEvent says which Event, if any, a history event is posted as.
func kubeEvent(e state.Event) (kube, bool) {
	normal, warning := corev1.EventTypeNormal, corev1.EventTypeWarning
	var k kube
	switch e.Kind {
	case state.EventPromote:
		k = kube{normal, "Promoted", "Promote", fmt.Sprintf("promoted %s, weight %d to %d", e.Reason, e.From, e.To)}
	case state.EventComplete:
		k = kube{normal, "Completed", "Complete", "completed: " + e.Reason}
	case state.EventApprove:
		k = kube{normal, "Approved", "Approve", "approved" + by(e) + colon(e.Reason)}
	case state.EventRequest:
		k = kube{normal, "Requested", "Request", "request" + by(e) + colon(e.Reason)}
	case state.EventPause:
		k = kube{normal, "Paused", "Pause", "paused" + colon(e.Reason)}
	case state.EventResume:
		k = kube{normal, "Resumed", "Resume", "resumed"}
	case state.EventRemap:
		k = kube{normal, "StepsEdited", "Remap", e.Reason}
	case state.EventForget:
		k = kube{normal, "Removed", "Forget", "no longer in the plan" + colon(e.Reason)}
	case state.EventHold:
		k = kube{warning, "Held", "Hold", "held" + colon(e.Reason)}
	case state.EventRollback:
		k = kube{warning, "RolledBack", "Rollback", fmt.Sprintf("rolled back, weight %d to %d%s", e.From, e.To, colon(e.Reason))}
	case state.EventRetire:
		k = kube{warning, "Retired", "Retire", fmt.Sprintf("retired, weight %d to %d%s", e.From, e.To, colon(e.Reason))}
	default:
		// EventGates, EventWait: too frequent for Events; the history
		// keeps them.
		return kube{}, false
	}
	switch {
	case e.Service != "" && e.Wave != "":
		k.note = fmt.Sprintf("service %s (wave %s): %s", e.Service, e.Wave, k.note)
	case e.Service != "":
		k.note = fmt.Sprintf("service %s: %s", e.Service, k.note)
	case e.Wave != "":
		k.note = fmt.Sprintf("wave %s: %s", e.Wave, k.note)
	}
	if e.Commit != "" {
		k.note += " (commit " + short(e.Commit) + ")"
	}
	return k, true
}

func random() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func colon(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func by(e state.Event) string {
	if e.Actor == "" {
		return ""
	}
	return " by " + e.Actor
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// post creates the Event, or coalesces it with an identical one.
func (r *Recorder) post(ctx context.Context, migration string, k kube) error {
	k.note = truncate(k.note, maxNote)
	id := key{migration, k.reason, k.note}
	now := r.now()

	r.mu.Lock()
	for kk, p := range r.seen {
		if now.Sub(p.written) > forgetAfter {
			delete(r.seen, kk)
		}
	}
	p := r.seen[id]
	if p != nil {
		p.count++
		if now.Sub(p.written) < CoalesceWindow || p.name == "" {
			// p.name is empty while another goroutine creates it.
			count := p.count
			r.mu.Unlock()
			r.log.Debug("event coalesced", "migration", migration, "reason", k.reason, "count", count)
			return nil
		}
		p.written = now
		name, count := p.name, p.count
		r.mu.Unlock()
		err := r.bump(ctx, name, count, now)
		if err == nil || !apierrors.IsNotFound(err) {
			return err
		}
		// Gone (expired, deleted): post it anew.
		r.mu.Lock()
		p.name = ""
		p.count = 1
	} else {
		p = &posted{written: now, count: 1}
		r.seen[id] = p
	}
	r.mu.Unlock()

	name, err := r.create(ctx, migration, k, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.seen[id] == p {
			delete(r.seen, id)
		}
		return err
	}
	p.name = name
	return nil
}

func (r *Recorder) create(ctx context.Context, migration string, k kube, now time.Time) (string, error) {
	ref, err := r.regarding(ctx, migration)
	if err != nil {
		return "", err
	}
	ev := &eventsv1.Event{
		// Named like client-go's recorders name theirs, plus a random
		// part: the API server validates a generateName as a whole name,
		// so "<configmap>." cannot be one.
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x%s", ref.Name, now.UnixNano(), random()), Namespace: r.namespace},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: Controller,
		ReportingInstance:   r.instance,
		Action:              k.action,
		Reason:              k.reason,
		Note:                k.note,
		Type:                k.typ,
		Regarding:           ref,
	}
	got, err := r.client.EventsV1().Events(r.namespace).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("migration %s: post event %s: %w", migration, k.reason, err)
	}
	return got.Name, nil
}

// bump sets the series of the Event name: count occurrences, the last now.
func (r *Recorder) bump(ctx context.Context, name string, count int32, now time.Time) error {
	events := r.client.EventsV1().Events(r.namespace)
	ev, err := events.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("event %s: %w", name, err)
	}
	if count < 2 {
		count = 2 // a series counts at least two
	}
	ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(now)}
	if _, err := events.Update(ctx, ev, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("event %s: update series: %w", name, err)
	}
	return nil
}

// regarding returns the reference to the migration's ConfigMap, creating
// the ConfigMap when missing.
func (r *Recorder) regarding(ctx context.Context, migration string) (corev1.ObjectReference, error) {
	r.refMu.Lock()
	defer r.refMu.Unlock()
	if ref, ok := r.refs[migration]; ok {
		return ref, nil
	}
	name := ConfigMapName(migration)
	cms := r.client.CoreV1().ConfigMaps(r.namespace)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: r.namespace,
				Labels:      map[string]string{LabelManagedBy: "ferry", LabelPart: "events"},
				Annotations: map[string]string{AnnotationMigration: migration},
			},
			Data: map[string]string{"description": fmt.Sprintf(
				"ferry posts the Events of migration %s (promotions, holds, rollbacks, drift) regarding this ConfigMap: kubectl events --for configmap/%s", migration, name)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			cm, err = cms.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return corev1.ObjectReference{}, fmt.Errorf("migration %s: configmap %s for events: %w", migration, name, err)
	}
	ref := corev1.ObjectReference{
		APIVersion: "v1", Kind: "ConfigMap", Namespace: cm.Namespace, Name: cm.Name,
		UID: cm.UID,
	}
	r.refs[migration] = ref
	return ref, nil
}
