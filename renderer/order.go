package renderer

import "strings"

// kustomize's legacy resource order (api/internal/builtins
// SortOrderTransformer, "DO NOT CHANGE" upstream): kinds listed first in
// this order, then every other kind, then the webhook configurations; ties
// by group_version_kind, then by "namespace|name" of the resource id.
var legacyFirst = []string{
	"Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
	"ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
	"ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
	"LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
	"Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
}

var legacyLast = []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}

var legacyRank = func() map[string]int {
	m := map[string]int{}
	for i, k := range legacyFirst {
		m[k] = -len(legacyFirst) + i
	}
	for i, k := range legacyLast {
		m[k] = 1 + i
	}
	return m
}()

// sortKey places an object in kustomize's legacy order.
type sortKey struct {
	rank int
	gvk  string // group_version_kind, "~G" for the core group
	id   string // namespace|name, "~X"/"~N" when empty
}

func makeSortKey(apiVersion, kind, namespace, name string) sortKey {
	group, version := splitAPIVersion(apiVersion)
	if group == "" {
		group = "~G"
	}
	if version == "" {
		version = "~V"
	}
	k := kind
	if k == "" {
		k = "~K"
	}
	if namespace == "" {
		namespace = "~X"
	}
	if name == "" {
		name = "~N"
	}
	return sortKey{
		rank: legacyRank[kind],
		gvk:  group + "_" + version + "_" + k,
		id:   namespace + "|" + name,
	}
}

func splitAPIVersion(apiVersion string) (group, version string) {
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i], apiVersion[i+1:]
	}
	return "", apiVersion
}

// compare orders keys as kustomize's legacyIDSorter does. (Namespaces of
// different groups sort in reverse upstream; ferry renders no Namespace.)
func (a sortKey) compare(b sortKey) int {
	if a.gvk != b.gvk {
		if a.rank != b.rank {
			if a.rank < b.rank {
				return -1
			}
			return 1
		}
		return strings.Compare(a.gvk, b.gvk)
	}
	return strings.Compare(a.id, b.id)
}
