package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// persisted is what survives a restart: the last accepted commit, so the
// history-safety check still knows where the history must continue from.
type persisted struct {
	URL        string    `json:"url"`
	LastGood   string    `json:"lastGood,omitempty"`
	AcceptedAt time.Time `json:"acceptedAt,omitzero"`
}

const stateFile = "state.json"

func loadState(dir string) (persisted, error) {
	var p persisted
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("source state: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("source state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return p, nil
}

// saveState writes the state atomically: a crash leaves the old file or the
// new one, never a torn one.
func saveState(dir string, p persisted) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("source state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("source state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("source state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("source state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("source state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; not all filesystems support it
		d.Close()
	}
	return nil
}
