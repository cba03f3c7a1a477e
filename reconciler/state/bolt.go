package state

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ferry-dev/ferry/plans"
)

// BoltFile is the name of the state file in the state directory.
const BoltFile = "state.db"

// DefaultLockTimeout is how long an operation waits for another process
// (the daemon, or a CLI command) to release the state file.
const DefaultLockTimeout = 10 * time.Second

// Bucket layout: migrations/<name>/{state: record JSON, history/<seq>: event JSON}.
var (
	bucketMigrations = []byte("migrations")
	bucketHistory    = []byte("history")
	keyState         = []byte("state")
)

// Bolt is the embedded store: one bbolt file. It opens the file for each
// operation and closes it after, so that the CLI and the daemon can share
// it (see the package documentation).
type Bolt struct {
	path    string
	timeout time.Duration
	// mu serializes this value's own operations, so that they queue here
	// rather than poll the file lock.
	mu sync.Mutex
}

var _ Store = (*Bolt)(nil)

// NewBolt returns the store kept in dir/BoltFile, creating dir and the file
// if needed. lockTimeout bounds the wait for the file lock; zero means
// DefaultLockTimeout.
func NewBolt(dir string, lockTimeout time.Duration) (*Bolt, error) {
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	b := &Bolt{path: filepath.Join(dir, BoltFile), timeout: lockTimeout}
	// Create the file and its buckets now, so that a bad directory fails
	// at start and reads never find a half-made file.
	if err := b.update(context.Background(), func(*bolt.Tx) error { return nil }); err != nil {
		return nil, err
	}
	return b, nil
}

// Path returns the state file's path.
func (b *Bolt) Path() string { return b.path }

func (b *Bolt) open(readOnly bool) (*bolt.DB, error) {
	db, err := bolt.Open(b.path, 0o600, &bolt.Options{Timeout: b.timeout, ReadOnly: readOnly})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("state: %s is locked by another process for more than %s: %w", b.path, b.timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", b.path, err)
	}
	return db, nil
}

func (b *Bolt) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	return b.do(ctx, false, func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(bucketMigrations); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

func (b *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	return b.do(ctx, true, func(db *bolt.DB) error { return db.View(fn) })
}

func (b *Bolt) do(ctx context.Context, readOnly bool, fn func(*bolt.DB) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if readOnly {
		if _, err := os.Stat(b.path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: %s: %w", b.path, err)
		}
	}
	db, err := b.open(readOnly)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: close %s: %w", b.path, cerr)
		}
	}()
	return fn(db)
}

// migrationBucket returns the migration's bucket, or nil when it has none
// and create is false.
func migrationBucket(tx *bolt.Tx, migration string, create bool) (*bolt.Bucket, error) {
	root := tx.Bucket(bucketMigrations)
	if root == nil {
		return nil, nil
	}
	if !create {
		return root.Bucket([]byte(migration)), nil
	}
	mb, err := root.CreateBucketIfNotExists([]byte(migration))
	if err != nil {
		return nil, err
	}
	if _, err := mb.CreateBucketIfNotExists(bucketHistory); err != nil {
		return nil, err
	}
	return mb, nil
}

func readRecord(mb *bolt.Bucket) (*record, error) {
	r := &record{}
	if mb == nil {
		return r, nil
	}
	v := mb.Get(keyState)
	if v == nil {
		return r, nil
	}
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return r, nil
}

func writeRecord(mb *bolt.Bucket, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return mb.Put(keyState, v)
}

func appendEvents(mb *bolt.Bucket, events []Event) error {
	h := mb.Bucket(bucketHistory)
	for _, e := range events {
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := h.Put(seqKey(e.Seq), v); err != nil {
			return err
		}
	}
	return nil
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// Load implements Progress.
func (b *Bolt) Load(ctx context.Context, migration string) (Snapshot, error) {
	r, err := b.record(ctx, migration)
	if err != nil {
		return Snapshot{}, fmt.Errorf("state: load %s: %w", migration, err)
	}
	return r.snapshot(migration), nil
}

// Save implements Progress.
func (b *Bolt) Save(ctx context.Context, c Change) (uint64, error) {
	var version uint64
	err := b.update(ctx, func(tx *bolt.Tx) error {
		mb, err := migrationBucket(tx, c.Migration, true)
		if err != nil {
			return err
		}
		r, err := readRecord(mb)
		if err != nil {
			return err
		}
		events, err := r.apply(c)
		if err != nil {
			return err
		}
		if err := appendEvents(mb, events); err != nil {
			return err
		}
		version = r.Version
		return writeRecord(mb, r)
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return 0, err
		}
		return 0, fmt.Errorf("state: save %s: %w", c.Migration, err)
	}
	return version, nil
}

// History implements History.
func (b *Bolt) History(ctx context.Context, migration, service string) ([]Event, error) {
	var out []Event
	err := b.view(ctx, func(tx *bolt.Tx) error {
		mb, err := migrationBucket(tx, migration, false)
		if err != nil || mb == nil {
			return err
		}
		return mb.Bucket(bucketHistory).ForEach(func(_, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode event: %w", err)
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: history of %s: %w", migration, err)
	}
	return filter(out, service), nil
}

// Submit implements Requests.
func (b *Bolt) Submit(ctx context.Context, q plans.Request) (plans.Request, error) {
	if err := checkRequest(q); err != nil {
		return q, err
	}
	err := b.update(ctx, func(tx *bolt.Tx) error {
		mb, err := migrationBucket(tx, q.Migration, true)
		if err != nil {
			return err
		}
		r, err := readRecord(mb)
		if err != nil {
			return err
		}
		var e Event
		q, e = r.submit(q)
		if err := appendEvents(mb, []Event{e}); err != nil {
			return err
		}
		return writeRecord(mb, r)
	})
	if err != nil {
		return q, fmt.Errorf("state: submit %s %s: %w", q.Kind, q.Scope(), err)
	}
	return q, nil
}

// Pending implements Requests.
func (b *Bolt) Pending(ctx context.Context, migration string) ([]plans.Request, error) {
	s, err := b.record(ctx, migration)
	if err != nil {
		return nil, fmt.Errorf("state: requests of %s: %w", migration, err)
	}
	sortRequests(s.Requests)
	return s.Requests, nil
}

// record reads a migration's record in one read-only transaction.
func (b *Bolt) record(ctx context.Context, migration string) (*record, error) {
	var r *record
	err := b.view(ctx, func(tx *bolt.Tx) error {
		mb, err := migrationBucket(tx, migration, false)
		if err != nil {
			return err
		}
		r, err = readRecord(mb)
		return err
	})
	return r, err
}

// Migrations returns the names of the migrations the store has state for.
func (b *Bolt) Migrations(ctx context.Context) ([]string, error) {
	var out []string
	err := b.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketMigrations)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: list migrations: %w", err)
	}
	return out, nil
}
