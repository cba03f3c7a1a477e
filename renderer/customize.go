package renderer

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/resmap"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// generatedDir is where ferry's generated overlay goes when the plan
// repository customizes a cluster; the user's kustomization names it as a
// resource (ferry adds it first when it does not).
const generatedDir = "ferry"

// kustomizationNames are the file names kustomize accepts.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// customize composes the user's overlays/<cluster>/ on top of ferry's
// overlay and builds it with krusty, then refuses the build if it changed
// a field ferry owns: weights, backends, exports, ferry's labels, or
// anything of a partial object beyond its labels and annotations.
func customize(cluster string, gen map[string][]byte, objs []objectRef, user map[string][]byte) (*ClusterOutput, error) {
	where := "overlays/" + cluster
	files := make(map[string][]byte, len(gen)+len(user))
	for p, b := range gen {
		files[generatedDir+"/"+p] = b
	}
	kname := ""
	for p, b := range user {
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("%s: file %q: expected a clean relative path", where, p)
		}
		if p == generatedDir || strings.HasPrefix(p, generatedDir+"/") {
			return nil, fmt.Errorf("%s: file %q: %s/ is reserved for ferry's generated overlay", where, p, generatedDir)
		}
		if p == manifestsFile {
			return nil, fmt.Errorf("%s: file %q: the name is reserved for the built manifests", where, p)
		}
		if slices.Contains(kustomizationNames, p) {
			if kname != "" {
				return nil, fmt.Errorf("%s: both %s and %s; keep one", where, kname, p)
			}
			kname = p
		}
		files[p] = b
	}
	if kname == "" {
		return nil, fmt.Errorf("%s: no kustomization.yaml", where)
	}
	k, err := addGeneratedBase(files[kname])
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", where, kname, err)
	}
	files[kname] = k

	m, err := buildKrusty(files)
	if err != nil {
		return nil, fmt.Errorf("%s: kustomize build: %w", where, err)
	}
	if err := checkProtected(where, objs, m); err != nil {
		return nil, err
	}
	return fromResMap(cluster, files, m, objs, true)
}

// addGeneratedBase puts ferry's overlay first in the kustomization's
// resources unless the user already named it.
func addGeneratedBase(b []byte) ([]byte, error) {
	rn, err := kyaml.Parse(string(b))
	if err != nil {
		return nil, err
	}
	doc := rn.YNode()
	if doc.Kind != kyaml.MappingNode {
		return nil, fmt.Errorf("expected a mapping")
	}
	var res *kyaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "resources" {
			res = doc.Content[i+1]
		}
	}
	if res == nil {
		res = &kyaml.Node{Kind: kyaml.SequenceNode, Tag: kyaml.NodeTagSeq}
		doc.Content = append(doc.Content,
			&kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagString, Value: "resources"}, res)
	}
	if res.Kind != kyaml.SequenceNode {
		return nil, fmt.Errorf("resources: expected a list")
	}
	for _, n := range res.Content {
		switch strings.TrimSuffix(strings.TrimPrefix(n.Value, "./"), "/") {
		case generatedDir:
			return b, nil
		}
	}
	res.Style = 0 // block style, also when the user wrote "resources: []"
	res.Content = append([]*kyaml.Node{{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagString, Value: generatedDir}}, res.Content...)
	s, err := rn.String()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// checkProtected compares the protected fields of every object ferry
// generated with the same object in the customized build.
func checkProtected(where string, objs []objectRef, m resmap.ResMap) error {
	built := make(map[objID]map[string]any, m.Size())
	for _, res := range m.Resources() {
		mp, err := res.Map()
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		built[idOf(res.GetApiVersion(), res.GetKind(), res.GetNamespace(), res.GetName())] = mp
	}
	for _, or := range objs {
		o := or.o
		got, ok := built[idOf(o.apiVersion, o.kind, o.namespace, o.name)]
		if !ok {
			return fmt.Errorf("%s: the overlay removes or renames %s %s/%s (service %s of migration %s); ferry's objects must keep their kind, namespace and name",
				where, o.kind, o.namespace, o.name, or.sh.service, or.sh.migration)
		}
		var want map[string]any
		if err := sigsyaml.Unmarshal(o.out, &want); err != nil {
			return fmt.Errorf("%s: %s: %w", where, o, err)
		}
		for _, p := range o.protect {
			w, g := collect(want, p), collect(got, p)
			if w != g {
				return fmt.Errorf("%s: the overlay changes %s of %s %s/%s from %s to %s; weights, backends, exports and ferry's labels are set by ferry",
					where, showPath(p), o.kind, o.namespace, o.name, w, g)
			}
		}
		if o.partial {
			if err := checkPartialShape(got); err != nil {
				return fmt.Errorf("%s: %s %s/%s is not ferry's (ferry only labels or annotates it), so the overlay may not change it: %w",
					where, o.kind, o.namespace, o.name, err)
			}
		}
	}
	return nil
}

func checkPartialShape(obj map[string]any) error {
	for k := range obj {
		switch k {
		case "apiVersion", "kind", "metadata":
		default:
			return fmt.Errorf("it adds %s", k)
		}
	}
	meta, _ := obj["metadata"].(map[string]any)
	for k := range meta {
		switch k {
		case "name", "namespace", "labels", "annotations":
		default:
			return fmt.Errorf("it adds metadata.%s", k)
		}
	}
	return nil
}

// collect returns the values at path p ("*" stands for every element of a
// list) as canonical JSON, "absent" when there are none.
func collect(v any, p []string) string {
	var vals []any
	var walk func(v any, p []string)
	walk = func(v any, p []string) {
		if len(p) == 0 {
			vals = append(vals, v)
			return
		}
		if p[0] == "*" {
			l, _ := v.([]any)
			for _, e := range l {
				walk(e, p[1:])
			}
			return
		}
		mp, _ := v.(map[string]any)
		if e, ok := mp[p[0]]; ok {
			walk(e, p[1:])
		}
	}
	walk(v, p)
	if len(vals) == 0 {
		return "absent"
	}
	var b []byte
	if len(vals) == 1 && !slices.Contains(p, "*") {
		b, _ = json.Marshal(vals[0])
	} else {
		b, _ = json.Marshal(vals)
	}
	return string(b)
}

// showPath writes a field path the way kubectl explains it, with keys that
// hold dots or slashes in brackets: metadata.labels[ferry.dev/service].
func showPath(p []string) string {
	var sb strings.Builder
	for i, s := range p {
		switch {
		case s == "*":
			sb.WriteString("[*]")
		case strings.ContainsAny(s, "./"):
			sb.WriteString("[" + s + "]")
		default:
			if i > 0 {
				sb.WriteByte('.')
			}
			sb.WriteString(s)
		}
	}
	return sb.String()
}
