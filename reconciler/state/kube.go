package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/plans"
)

// Labels and annotations of the Kube store's ConfigMaps.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPart      = "ferry.dev/state"
	// AnnotationMigration carries the migration's name as written; the
	// ConfigMap's name is a DNS-safe form of it.
	AnnotationMigration = "ferry.dev/migration"
	// LabelChunk numbers a history archive.
	LabelChunk = "ferry.dev/history-chunk"
)

// Keys of a migration's state ConfigMap.
const (
	keyStateJSON = "state.json"
	// keyHistory holds the latest events as JSON lines; keySealed the
	// previous chunk, until it is copied to its archive ConfigMap.
	keyHistory = "history.jsonl"
	keySealed  = "sealed.jsonl"
)

// DefaultChunkSize is the size of history above which the Kube store moves
// it out of the migration's ConfigMap into an archive ConfigMap; a
// ConfigMap holds at most 1 MiB.
const DefaultChunkSize = 128 << 10

// maxConfigMapData leaves room under the API server's 1 MiB limit for the
// object's metadata.
const maxConfigMapData = 1000 << 10

// ErrTooLarge is returned when a migration's progress no longer fits in a
// ConfigMap.
var ErrTooLarge = errors.New("state: progress does not fit in a ConfigMap")

// maxAttempts bounds the retries of an update that raced another writer's.
const maxAttempts = 20

// Kube keeps state in ConfigMaps of one namespace of a home cluster: per
// migration one ConfigMap named ferry-<migration> holding the progress,
// the pending requests and the latest history as JSON, and archive
// ConfigMaps ferry-<migration>-history-<n> for older history.
//
// Every write is a read-modify-update of the migration's ConfigMap with its
// resourceVersion, so a write that raced another is refused by the API
// server and tried again on fresh data; a Save whose progress was changed
// by another writer meanwhile fails with ErrConflict.
type Kube struct {
	client    kubernetes.Interface
	namespace string
	// ChunkSize is DefaultChunkSize unless set before first use.
	ChunkSize int
}

var _ Store = (*Kube)(nil)

// NewKube returns a store in namespace, which must exist.
func NewKube(client kubernetes.Interface, namespace string) *Kube {
	return &Kube{client: client, namespace: namespace, ChunkSize: DefaultChunkSize}
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// ConfigMapName returns the name of a migration's state ConfigMap.
func ConfigMapName(migration string) string {
	name := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(migration), "-"), "-")
	if name != migration || len(name) > 40 {
		sum := sha256.Sum256([]byte(migration))
		if len(name) > 40 {
			name = strings.TrimRight(name[:40], "-")
		}
		name += "-" + hex.EncodeToString(sum[:4])
	}
	return "ferry-" + name
}

func archiveName(migration string, chunk int) string {
	return ConfigMapName(migration) + "-history-" + strconv.Itoa(chunk)
}

func (k *Kube) get(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	cm, err := k.client.CoreV1().ConfigMaps(k.namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

func decodeRecord(cm *corev1.ConfigMap) (*record, error) {
	r := &record{}
	if cm == nil || cm.Data[keyStateJSON] == "" {
		return r, nil
	}
	if err := json.Unmarshal([]byte(cm.Data[keyStateJSON]), r); err != nil {
		return nil, fmt.Errorf("configmap %s: decode %s: %w", cm.Name, keyStateJSON, err)
	}
	return r, nil
}

// Load implements Progress.
func (k *Kube) Load(ctx context.Context, migration string) (Snapshot, error) {
	cm, err := k.get(ctx, ConfigMapName(migration))
	if err != nil {
		return Snapshot{}, fmt.Errorf("state: load %s: %w", migration, err)
	}
	r, err := decodeRecord(cm)
	if err != nil {
		return Snapshot{}, fmt.Errorf("state: load %s: %w", migration, err)
	}
	return r.snapshot(migration), nil
}

// Save implements Progress.
func (k *Kube) Save(ctx context.Context, c Change) (uint64, error) {
	var version uint64
	err := k.mutate(ctx, c.Migration, func(r *record) ([]Event, error) {
		events, err := r.apply(c)
		version = r.Version
		return events, err
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return 0, err
		}
		return 0, fmt.Errorf("state: save %s: %w", c.Migration, err)
	}
	return version, nil
}

// Submit implements Requests.
func (k *Kube) Submit(ctx context.Context, q plans.Request) (plans.Request, error) {
	if err := checkRequest(q); err != nil {
		return q, err
	}
	var out plans.Request
	err := k.mutate(ctx, q.Migration, func(r *record) ([]Event, error) {
		var e Event
		out, e = r.submit(q)
		return []Event{e}, nil
	})
	if err != nil {
		return q, fmt.Errorf("state: submit %s %s: %w", q.Kind, q.Scope(), err)
	}
	return out, nil
}

// Pending implements Requests.
func (k *Kube) Pending(ctx context.Context, migration string) ([]plans.Request, error) {
	cm, err := k.get(ctx, ConfigMapName(migration))
	if err != nil {
		return nil, fmt.Errorf("state: requests of %s: %w", migration, err)
	}
	r, err := decodeRecord(cm)
	if err != nil {
		return nil, fmt.Errorf("state: requests of %s: %w", migration, err)
	}
	sortRequests(r.Requests)
	return r.Requests, nil
}

// History implements History: the archives in order, then the sealed
// chunk, then the latest events.
func (k *Kube) History(ctx context.Context, migration, service string) ([]Event, error) {
	cm, err := k.get(ctx, ConfigMapName(migration))
	if err != nil {
		return nil, fmt.Errorf("state: history of %s: %w", migration, err)
	}
	if cm == nil {
		return nil, nil
	}
	r, err := decodeRecord(cm)
	if err != nil {
		return nil, fmt.Errorf("state: history of %s: %w", migration, err)
	}
	var out []Event
	for i := 1; i < r.Chunks; i++ {
		a, err := k.get(ctx, archiveName(migration, i))
		if err != nil {
			return nil, fmt.Errorf("state: history of %s: chunk %d: %w", migration, i, err)
		}
		if a == nil {
			return nil, fmt.Errorf("state: history of %s: archive %s is missing", migration, archiveName(migration, i))
		}
		if out, err = decodeLines(out, a.Data[keyHistory]); err != nil {
			return nil, fmt.Errorf("state: history of %s: chunk %d: %w", migration, i, err)
		}
	}
	for _, key := range []string{keySealed, keyHistory} {
		if out, err = decodeLines(out, cm.Data[key]); err != nil {
			return nil, fmt.Errorf("state: history of %s: %w", migration, err)
		}
	}
	return filter(out, service), nil
}

func decodeLines(out []Event, s string) ([]Event, error) {
	for line := range strings.SplitSeq(s, "\n") {
		if line == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return out, fmt.Errorf("decode event: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

func encodeLines(events []Event) (string, error) {
	var b bytes.Buffer
	for _, e := range events {
		line, err := json.Marshal(e)
		if err != nil {
			return "", err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// mutate reads the migration's ConfigMap, lets fn change the record and
// returns the events to append, and writes it back conditionally on the
// resourceVersion read; a write that raced another is tried again from a
// fresh read. fn must depend on nothing but the record it is given.
func (k *Kube) mutate(ctx context.Context, migration string, fn func(*record) ([]Event, error)) error {
	name := ConfigMapName(migration)
	cms := k.client.CoreV1().ConfigMaps(k.namespace)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if attempt >= maxAttempts {
				return fmt.Errorf("configmap %s/%s: gave up after %d concurrent updates", k.namespace, name, attempt)
			}
			// Jittered backoff so that racing writers spread out.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(5+rand.IntN(20*attempt)) * time.Millisecond):
			}
		}
		cm, err := k.get(ctx, name)
		if err != nil {
			return fmt.Errorf("configmap %s/%s: %w", k.namespace, name, err)
		}
		r, err := decodeRecord(cm)
		if err != nil {
			return err
		}
		events, err := fn(r)
		if err != nil {
			return err
		}
		lines, err := encodeLines(events)
		if err != nil {
			return err
		}
		if cm == nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: k.namespace,
				Labels:      map[string]string{LabelManagedBy: "ferry", LabelPart: "progress"},
				Annotations: map[string]string{AnnotationMigration: migration},
			}}
		} else {
			cm = cm.DeepCopy()
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		history := cm.Data[keyHistory] + lines
		if len(history) > k.chunkSize() && cm.Data[keyHistory] != "" {
			// Seal the current chunk; the one sealed before goes to its
			// archive first, so it is never dropped unarchived.
			if sealed := cm.Data[keySealed]; sealed != "" {
				if err := k.archive(ctx, migration, r.Chunks, sealed); err != nil {
					return err
				}
			}
			r.Chunks++
			cm.Data[keySealed] = cm.Data[keyHistory]
			history = lines
		}
		cm.Data[keyHistory] = history
		state, err := json.Marshal(r)
		if err != nil {
			return err
		}
		cm.Data[keyStateJSON] = string(state)
		if size := len(cm.Data[keyStateJSON]) + len(cm.Data[keySealed]) + len(cm.Data[keyHistory]); size > maxConfigMapData {
			return fmt.Errorf("configmap %s/%s: %d bytes: %w", k.namespace, name, size, ErrTooLarge)
		}
		if cm.ResourceVersion == "" {
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "ferry"})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		} else {
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "ferry"})
			if apierrors.IsConflict(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("configmap %s/%s: %w", k.namespace, name, err)
		}
		return nil
	}
}

func (k *Kube) chunkSize() int {
	if k.ChunkSize > 0 {
		return k.ChunkSize
	}
	return DefaultChunkSize
}

// archive writes a sealed history chunk to its ConfigMap. The content of a
// chunk number is fixed once sealed, so writing it twice is harmless.
func (k *Kube) archive(ctx context.Context, migration string, chunk int, lines string) error {
	cms := k.client.CoreV1().ConfigMaps(k.namespace)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: archiveName(migration, chunk), Namespace: k.namespace,
			Labels:      map[string]string{LabelManagedBy: "ferry", LabelPart: "history", LabelChunk: strconv.Itoa(chunk)},
			Annotations: map[string]string{AnnotationMigration: migration},
		},
		Data: map[string]string{keyHistory: lines},
	}
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "ferry"})
	if apierrors.IsAlreadyExists(err) {
		// A previous attempt wrote it; make sure it is complete.
		old, gerr := cms.Get(ctx, cm.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("configmap %s/%s: %w", k.namespace, cm.Name, gerr)
		}
		if old.Data[keyHistory] == lines {
			return nil
		}
		cm.ResourceVersion = old.ResourceVersion
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "ferry"})
	}
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", k.namespace, cm.Name, err)
	}
	return nil
}

// Migrations returns the names of the migrations the store has state for.
func (k *Kube) Migrations(ctx context.Context) ([]string, error) {
	list, err := k.client.CoreV1().ConfigMaps(k.namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelPart + "=progress"})
	if err != nil {
		return nil, fmt.Errorf("state: list migrations: %w", err)
	}
	var out []string
	for _, cm := range list.Items {
		if m := cm.Annotations[AnnotationMigration]; m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out, nil
}
