package reconciler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/renderer"
)

// DirTarget writes rendered overlays to a directory, the rendered-manifests
// pattern: Argo CD or Flux applies them. It cannot see clusters, so it
// cannot check that backends are ready.
type DirTarget struct {
	Dir string
}

var _ Target = (*DirTarget)(nil)

// Apply replaces the directory's contents with res, cluster by cluster,
// through a temporary directory and a rename so readers never see half.
func (d *DirTarget) Apply(ctx context.Context, res *renderer.Result) error {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(d.Dir, ".render-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := renderer.WriteDir(res, tmp); err != nil {
		return err
	}
	for _, c := range res.Clusters {
		dst := filepath.Join(d.Dir, c.Name)
		old := dst + ".old"
		_ = os.RemoveAll(old)
		if _, err := os.Stat(dst); err == nil {
			if err := os.Rename(dst, old); err != nil {
				return fmt.Errorf("cluster %s: %w", c.Name, err)
			}
		}
		if err := os.Rename(filepath.Join(tmp, c.Name), dst); err != nil {
			return fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		_ = os.RemoveAll(old)
	}
	return nil
}

// CheckReadiness is false: a directory has no endpoints to look at.
func (d *DirTarget) CheckReadiness() bool { return false }
