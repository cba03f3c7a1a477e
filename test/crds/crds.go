// Package crds holds the CustomResourceDefinitions that the test harness
// (package test/cluster) installs besides those testbin.sh takes from the
// providers' Go modules: the ones no fetchable module ships. Each file says
// where the real CRD lives and what this copy keeps.
package crds

import "embed"

// FS holds the CRD manifests, one per file, at its root.
//
//go:embed *.yaml
var FS embed.FS
