package renderer

import (
	"fmt"
	"path"
	"sync"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// krustyMu serializes krusty builds: kustomize keeps global state (the
// OpenAPI schema in kyaml/openapi) that concurrent builds race on
// (kubernetes-sigs/kustomize#3659; Flux's kustomize-controller holds one
// mutex for the same reason).
var krustyMu sync.Mutex

// krustyRoot is where overlays are placed on krusty's in-memory filesystem.
const krustyRoot = "/overlay"

// buildKrusty runs `kustomize build` in process on an overlay given as files
// by slash path, with kustomize's default (legacy) resource order, as
// `kubectl kustomize` does. A panic inside kustomize becomes an error.
func buildKrusty(files map[string][]byte) (m resmap.ResMap, err error) {
	krustyMu.Lock()
	defer krustyMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("kustomize build panicked: %v", r)
		}
	}()
	fs := filesys.MakeFsInMemory()
	if err := fs.MkdirAll(krustyRoot); err != nil {
		return nil, err
	}
	for p, b := range files {
		if err := fs.WriteFile(path.Join(krustyRoot, p), b); err != nil {
			return nil, err
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	return krusty.MakeKustomizer(opts).Run(fs, krustyRoot)
}

// buildGenerated builds ferry's own overlay with krusty rather than the fast
// path. Its bytes must equal the fast path's; tests check.
func buildGenerated(cluster string, files map[string][]byte, objs []objectRef) (*ClusterOutput, error) {
	m, err := buildKrusty(files)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: kustomize build: %w", cluster, err)
	}
	return fromResMap(cluster, files, m, objs, false)
}

// fromResMap turns a krusty build into a ClusterOutput, matching its
// resources to the objects ferry generated to know which service each
// belongs to.
func fromResMap(cluster string, files map[string][]byte, m resmap.ResMap, objs []objectRef, customized bool) (*ClusterOutput, error) {
	byID := make(map[objID]objectRef, len(objs))
	for _, or := range objs {
		byID[idOf(or.o.apiVersion, or.o.kind, or.o.namespace, or.o.name)] = or
	}
	manifests, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	out := &ClusterOutput{Name: cluster, Files: files, Manifests: manifests, Customized: customized}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cluster, err)
		}
		o := Object{
			APIVersion: res.GetApiVersion(), Kind: res.GetKind(),
			Namespace: res.GetNamespace(), Name: res.GetName(), YAML: y,
		}
		if or, ok := byID[idOf(o.APIVersion, o.Kind, o.Namespace, o.Name)]; ok {
			o.Migration, o.Service, o.Partial = or.sh.migration, or.sh.service, or.o.partial
		}
		out.Objects = append(out.Objects, o)
	}
	return out, nil
}

// objID identifies an object in a cluster: versions of one group are the
// same object.
type objID struct{ group, kind, namespace, name string }

func idOf(apiVersion, kind, namespace, name string) objID {
	g, _ := splitAPIVersion(apiVersion)
	return objID{g, kind, namespace, name}
}
