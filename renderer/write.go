package renderer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// manifestsFile is the name of the built manifests beside each overlay.
const manifestsFile = "manifests.yaml"

// WriteDir writes each cluster's overlay to outDir/<cluster>/ and its build
// to outDir/<cluster>/manifests.yaml, so that `kustomize build
// outDir/<cluster>` prints manifests.yaml byte for byte. Files already in
// outDir that the result does not name are left alone.
func WriteDir(res *Result, outDir string) error {
	for _, c := range res.Clusters {
		dir := filepath.Join(outDir, c.Name)
		paths := make([]string, 0, len(c.Files))
		for p := range c.Files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			if err := writeFile(filepath.Join(dir, filepath.FromSlash(p)), c.Files[p]); err != nil {
				return fmt.Errorf("cluster %s: %w", c.Name, err)
			}
		}
		if err := writeFile(filepath.Join(dir, manifestsFile), c.Manifests); err != nil {
			return fmt.Errorf("cluster %s: %w", c.Name, err)
		}
	}
	return nil
}

func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}
