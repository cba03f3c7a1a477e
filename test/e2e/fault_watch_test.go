package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/ferry-dev/ferry/test/cluster"
)

// faultWatch follows every version of the TrafficSplits of namespace shop
// in one cluster, through outages of its API server: when the watch
// breaks it resumes from the last version seen, so that after a restart
// etcd replays what happened meanwhile and no version is missed. Every
// version must sum to 100 and give b at most one step (step) more than
// the version before, never less (no rollback in these scenarios); no
// split may be deleted (no prune).
type faultWatch struct {
	cl      string
	step    int64
	changes chan splitChange // every change of weight; dropped when full
	cancel  context.CancelFunc
	done    chan struct{}

	mu        sync.Mutex
	last      map[string]int64          // weight given to b, by service
	versions  map[string][]splitVersion // every version seen, by service
	withdrawn []splitChange             // changes one step down
	bad       []string
}

// splitVersion is one version of a split.
type splitVersion struct {
	weight int64
	rv     int64
}

type splitChange struct {
	service string
	weight  int64
	at      time.Time
}

func watchFault(t *testing.T, env *cluster.Env, cl string, step int64) *faultWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &faultWatch{cl: cl, step: step, changes: make(chan splitChange, 1024), cancel: cancel,
		done: make(chan struct{}), last: map[string]int64{}, versions: map[string][]splitVersion{}}
	ri := env.Clusters[cl].Dynamic.Resource(splitResource).Namespace("shop")
	// Established before the daemon runs, so that no version is missed.
	wi, err := ri.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("cluster %s: watch TrafficSplits: %v", cl, err)
	}
	go func() {
		defer close(w.done)
		rv := ""
		for {
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					if st := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(st) || apierrors.IsGone(st) {
						w.violate(fmt.Sprintf("cluster %s: watch from resourceVersion %s expired: versions were missed", cl, rv))
						return
					}
					break // resume below
				}
				ts, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = ts.GetResourceVersion()
				w.observe(ev.Type, ts)
			}
			for {
				if ctx.Err() != nil {
					return
				}
				// The server went away or ended the watch: resume after the
				// last version seen, waiting while the server is down.
				if wi, err = ri.Watch(ctx, metav1.ListOptions{ResourceVersion: rv}); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *faultWatch) observe(typ watch.EventType, ts *unstructured.Unstructured) {
	name := ts.GetName()
	if typ == watch.Deleted {
		w.violate(fmt.Sprintf("cluster %s: split shop/%s was deleted (pruned) mid-migration", w.cl, name))
		return
	}
	weight, err := splitWeight(w.cl, ts)
	if err != nil {
		w.violate("invariant 1: " + err.Error())
		return
	}
	rv, _ := strconv.ParseInt(ts.GetResourceVersion(), 10, 64)
	change := splitChange{service: name, weight: weight, at: time.Now()}
	w.mu.Lock()
	prev, seen := w.last[name]
	w.last[name] = weight
	w.versions[name] = append(w.versions[name], splitVersion{weight: weight, rv: rv})
	if seen && weight == prev-w.step {
		w.withdrawn = append(w.withdrawn, change)
	}
	w.mu.Unlock()
	switch {
	case !seen && weight > w.step:
		w.violate(fmt.Sprintf("invariant 2: cluster %s: split shop/%s first appeared giving b %d%%", w.cl, name, weight))
	case seen && weight != prev && weight != prev+w.step && weight != prev-w.step:
		w.violate(fmt.Sprintf("invariant 2: cluster %s: split shop/%s went from %d%% to %d%% for b in one write", w.cl, name, prev, weight))
	}
	if !seen || weight != prev {
		select {
		case w.changes <- change:
		default:
		}
	}
}

func (w *faultWatch) violate(msg string) {
	w.mu.Lock()
	w.bad = append(w.bad, msg)
	w.mu.Unlock()
}

func (w *faultWatch) violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bad...)
}

// weight returns the last weight seen for service, -1 for none.
func (w *faultWatch) weight(service string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.last[service]; ok {
		return v
	}
	return -1
}

// heldBy reports whether service's split gave b weight in a version with
// a resourceVersion of at most rv.
func (w *faultWatch) heldBy(service string, weight, rv int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.versions[service] {
		if v.weight == weight && v.rv <= rv {
			return true
		}
	}
	return false
}

// withdrawals returns the changes one step down.
func (w *faultWatch) withdrawals() []splitChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]splitChange(nil), w.withdrawn...)
}

// waitFor waits for a change of a split to a weight of at least min, and
// returns it.
func (w *faultWatch) waitFor(t *testing.T, min int64, within time.Duration) splitChange {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case c := <-w.changes:
			if c.weight >= min {
				return c
			}
		case <-deadline:
			t.Fatalf("cluster %s: no split reached %d%% within %s", w.cl, min, within)
		}
	}
}

func (w *faultWatch) drain() {
	for {
		select {
		case <-w.changes:
		default:
			return
		}
	}
}

func (w *faultWatch) stop() {
	w.cancel()
	<-w.done
}
