package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Defaults of Config, those of Kubernetes' own controllers.
const (
	DefaultNamespace     = "ferry-system"
	DefaultName          = "ferry"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config says which Lease to campaign for, as whom, and how fast.
type Config struct {
	// Client talks to the cluster holding the Lease.
	Client kubernetes.Interface
	// Namespace and Name of the Lease; DefaultNamespace and DefaultName
	// when empty. The namespace must exist.
	Namespace, Name string
	// Identity names this replica in the Lease; NewIdentity() when empty.
	// It must differ between replicas.
	Identity string
	// LeaseDuration is how long the others wait after the last renewal
	// they observed before they take the Lease over; a whole number of
	// seconds, because the Lease records it in seconds.
	LeaseDuration time.Duration
	// RenewDeadline is how long after the start of its last successful
	// renewal the leader may still write; less than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is the time between attempts to acquire or renew.
	RetryPeriod time.Duration
	// Logger receives leadership changes and client-go's messages.
	Logger *slog.Logger
	// OnChange, when set, is called with true before the function given
	// to Run starts and with false after it returned (a gauge of
	// leadership). It must not block.
	OnChange func(leading bool)
}

// NewIdentity returns the host name and a random suffix, so that two
// replicas on one host (or a restarted pod keeping its name) differ.
func NewIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ferry"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return host + "_" + hex.EncodeToString(b)
}

// Elector campaigns for a Lease. Its Leading method is safe for concurrent
// use.
type Elector struct {
	cfg Config
	now func() time.Time

	mu sync.Mutex
	// held is true from the acquisition of the Lease until the function
	// run as leader returned; deadline is the fence: the start of the
	// last successful acquisition or renewal plus RenewDeadline.
	held     bool
	deadline time.Time
}

// New checks cfg, fills in defaults, and returns an elector.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil {
		return nil, errors.New("leader election: no client")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Identity == "" {
		cfg.Identity = NewIdentity()
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.LeaseDuration < time.Second || cfg.LeaseDuration%time.Second != 0:
		// client-go writes int(LeaseDuration/time.Second) into the Lease
		// and the others wait that long: a fraction would be cut off and
		// shorten the margin the fence relies on.
		return nil, fmt.Errorf("leader election: lease duration %s is not a whole number of seconds", cfg.LeaseDuration)
	case cfg.RenewDeadline >= cfg.LeaseDuration:
		return nil, fmt.Errorf("leader election: renew deadline %s is not less than lease duration %s", cfg.RenewDeadline, cfg.LeaseDuration)
	case cfg.RetryPeriod <= 0 || float64(cfg.RenewDeadline) <= leaderelection.JitterFactor*float64(cfg.RetryPeriod):
		return nil, fmt.Errorf("leader election: renew deadline %s is not more than %.1f times the retry period %s", cfg.RenewDeadline, leaderelection.JitterFactor, cfg.RetryPeriod)
	}
	return &Elector{cfg: cfg, now: time.Now}, nil
}

// Run is New(cfg) followed by Elector.Run.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	e, err := New(cfg)
	if err != nil {
		return err
	}
	return e.Run(ctx, lead)
}

// Identity returns the identity this elector writes into the Lease.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Leading reports whether this replica may write: it holds the Lease, the
// function run as leader has not returned, and the renew deadline has not
// passed since the start of the last successful renewal. Ask it before
// every write.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.held && e.now().Before(e.deadline)
}

// Run campaigns for the Lease until ctx ends. Each time this replica
// acquires it, Run calls lead with a context that is cancelled when ctx
// ends, when the Lease is lost, or when the fence closes (see Leading),
// whichever comes first; then it campaigns again. The Lease is renewed
// while lead runs, also after ctx ended, and released once lead returned,
// so lead must return soon after its context is cancelled, and may use
// that time to finish a write. When lead returns by itself while still
// leading, Run releases the Lease and returns.
//
// Run returns nil when ctx ends, or an error when the elector cannot be
// set up.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	for ctx.Err() == nil {
		again, err := e.campaign(ctx, lead)
		if err != nil || !again {
			return err
		}
	}
	return nil
}

// campaign runs one client-go elector until this replica lost or gave up
// the Lease, or ctx ended before it acquired it. It reports whether to
// campaign again.
func (e *Elector) campaign(ctx context.Context, lead func(ctx context.Context)) (again bool, err error) {
	log := e.cfg.Logger.With("lease", e.cfg.Namespace+"/"+e.cfg.Name, "identity", e.cfg.Identity)
	lock := &fencedLock{e: e, inner: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
		Client:     e.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
		Labels:     map[string]string{"app.kubernetes.io/managed-by": "ferry"},
	}, leadDone: make(chan struct{})}

	// The elector's context outlives ctx while lead runs, so that the
	// Lease stays renewed until lead returned, and is released only then.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	electCtx = klog.NewContext(electCtx, logr.FromSlogHandler(log.Handler()))
	stopUnlessLeading := context.AfterFunc(ctx, func() {
		if !lock.acquired() {
			stopElecting()
		}
	})
	defer stopUnlessLeading()

	var leadReturned, gaveUp bool
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            e.cfg.Name,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			// client-go starts this in a goroutine and does not wait
			// for it; campaign does, through leadDone.
			OnStartedLeading: func(lost context.Context) {
				defer close(lock.leadDone)
				leadCtx, cancel := context.WithCancel(ctx)
				defer cancel()
				defer context.AfterFunc(lost, cancel)()
				go e.watchFence(leadCtx, cancel)

				log.Info("leading")
				if e.cfg.OnChange != nil {
					e.cfg.OnChange(true)
				}
				lead(leadCtx)
				e.mu.Lock()
				e.held = false
				lock.phase = phaseDone
				e.mu.Unlock()
				gaveUp = leadCtx.Err() == nil
				if e.cfg.OnChange != nil {
					e.cfg.OnChange(false)
				}
				log.Info("stopped leading", "lostLease", lost.Err() != nil, "fenceClosed", !e.fenceOpen(), "shutdown", ctx.Err() != nil)
				leadReturned = true
				stopElecting()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return false, fmt.Errorf("leader election: %w", err)
	}
	le.Run(electCtx)
	if lock.acquired() {
		<-lock.leadDone
	}
	return leadReturned && !gaveUp, nil
}

// watchFence cancels the leader's context when the fence closes.
func (e *Elector) watchFence(ctx context.Context, cancel context.CancelFunc) {
	for {
		e.mu.Lock()
		left := e.deadline.Sub(e.now())
		e.mu.Unlock()
		if left <= 0 {
			cancel()
			return
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (e *Elector) fenceOpen() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now().Before(e.deadline)
}

// Phases of one campaign.
const (
	phaseCampaigning = iota
	phaseHeld
	phaseDone
)

// fencedLock is the LeaseLock client-go's elector uses, watched: each
// successful acquisition or renewal moves the fence deadline to the time
// the request started plus RenewDeadline, and a release waits until lead
// returned and never blanks a Lease another replica holds.
type fencedLock struct {
	e     *Elector
	inner *resourcelock.LeaseLock
	// phase is guarded by e.mu.
	phase int
	// leadDone is closed when OnStartedLeading returns.
	leadDone chan struct{}
	// lastHolder is the holder in the record Get returned last; only the
	// elector's goroutine calls Get and Update.
	lastHolder string
}

var _ resourcelock.Interface = (*fencedLock)(nil)

func (l *fencedLock) acquired() bool {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.phase != phaseCampaigning
}

func (l *fencedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.inner.Get(ctx)
	if err == nil {
		l.lastHolder = rec.HolderIdentity
	}
	return rec, raw, err
}

func (l *fencedLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	start := l.e.now()
	err := l.inner.Create(ctx, rec)
	if err == nil {
		l.renewed(rec, start)
	}
	return err
}

func (l *fencedLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	if rec.HolderIdentity == "" {
		// A release. client-go releases also after it failed to renew,
		// while lead may still run, and decides from the record it last
		// observed, not from the one it has just read: wait for lead,
		// and leave alone a Lease that another replica took meanwhile.
		if l.acquired() {
			select {
			case <-l.leadDone:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if l.lastHolder != l.inner.Identity() {
			return fmt.Errorf("lease held by %q, not releasing it", l.lastHolder)
		}
		return l.inner.Update(ctx, rec)
	}
	start := l.e.now()
	err := l.inner.Update(ctx, rec)
	if err == nil {
		l.renewed(rec, start)
	}
	return err
}

// renewed moves the fence after a successful write of rec that started at
// start: the API server stored it after start, so no other replica can
// have observed it earlier, nor take the Lease over before
// start+LeaseDuration.
func (l *fencedLock) renewed(rec resourcelock.LeaderElectionRecord, start time.Time) {
	if rec.HolderIdentity != l.inner.Identity() {
		return
	}
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	switch l.phase {
	case phaseCampaigning:
		l.phase = phaseHeld
		l.e.held = true
	case phaseDone:
		return
	default:
		if !l.e.now().Before(l.e.deadline) {
			// The fence closed and lead is being stopped: a renewal
			// that got through late does not reopen it.
			return
		}
	}
	l.e.deadline = start.Add(l.e.cfg.RenewDeadline)
}

func (l *fencedLock) RecordEvent(s string) { l.inner.RecordEvent(s) }
func (l *fencedLock) Identity() string     { return l.inner.Identity() }
func (l *fencedLock) Describe() string     { return l.inner.Describe() }
