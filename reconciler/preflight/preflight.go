// Package preflight checks, per cluster, that ferry can do what a plan
// needs there before a migration starts: the API server answers, the
// credentials work, RBAC allows every verb on every kind ferry renders, the
// providers' CRDs serve the versions ferry renders, the plan's namespaces
// exist and, for Linkerd, the multicluster Link to the peer is present.
//
// It reads only; it never changes a cluster.
package preflight

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/renderer"
)

// Result is one check's outcome.
type Result struct {
	Cluster string `json:"cluster"`
	Check   string `json:"check"`
	OK      bool   `json:"ok"`
	// Reason says what failed and how to fix it.
	Reason string `json:"reason,omitempty"`
}

// LinkNamespace is where `linkerd multicluster link` puts Link objects.
const LinkNamespace = "linkerd-multicluster"

var linkGVR = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha1", Resource: "links"}

// Check runs every check for one cluster: out is what ferry renders for it.
// Each API call has timeout.
func Check(ctx context.Context, cfg *rest.Config, repo *plans.Repository, out *renderer.ClusterOutput, timeout time.Duration) []Result {
	cluster := out.Name
	res := func(check string, ok bool, reason string, args ...any) Result {
		return Result{Cluster: cluster, Check: check, OK: ok, Reason: fmt.Sprintf(reason, args...)}
	}
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, timeout) }
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = timeout
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return []Result{res("reachable", false, "client: %v", err)}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return []Result{res("reachable", false, "client: %v", err)}
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		if apierrors.IsUnauthorized(err) {
			return []Result{res("reachable", true, ""), res("credentials", false, "the API server refused the credentials: %v; renew the kubeconfig's token or certificate", err)}
		}
		return []Result{res("reachable", false, "%v; check the kubeconfig's server address and the network path to it", err)}
	}
	out2 := []Result{res("reachable", true, "Kubernetes %s", v.GitVersion)}
	c, cancel := call()
	_, err = client.AuthorizationV1().SelfSubjectAccessReviews().Create(c, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "namespaces"}},
	}, metav1.CreateOptions{})
	cancel()
	if apierrors.IsUnauthorized(err) {
		return append(out2, res("credentials", false, "the API server refused the credentials; renew the kubeconfig's token or certificate"))
	}
	out2 = append(out2, res("credentials", err == nil, "%s", errText(err)))

	// Kinds and namespaces ferry renders here.
	type kind struct{ apiVersion, kind string }
	kinds := map[kind]bool{}
	namespaces := map[string]bool{}
	for _, o := range out.Objects {
		kinds[kind{o.APIVersion, o.Kind}] = o.Partial || kinds[kind{o.APIVersion, o.Kind}]
		if o.Namespace != "" {
			namespaces[o.Namespace] = true
		}
	}
	keys := make([]kind, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].apiVersion+keys[i].kind < keys[j].apiVersion+keys[j].kind })
	for _, k := range keys {
		name := fmt.Sprintf("serves %s %s", k.apiVersion, k.kind)
		gv, _ := schema.ParseGroupVersion(k.apiVersion)
		list, err := client.Discovery().ServerResourcesForGroupVersion(k.apiVersion)
		resource := ""
		if err == nil {
			for _, r := range list.APIResources {
				if r.Kind == k.kind && !strings.Contains(r.Name, "/") {
					resource = r.Name
				}
			}
		}
		if resource == "" {
			out2 = append(out2, res(name, false, "%s %s is not served; install the provider's CRDs in version %s", k.apiVersion, k.kind, gv.Version))
			continue
		}
		out2 = append(out2, res(name, true, ""))
		// Partial objects (labels on Services ferry does not own) need no
		// create or delete.
		verbs := []string{"get", "list", "create", "patch", "delete"}
		if kinds[k] {
			verbs = []string{"get", "patch"}
		}
		var denied []string
		for _, verb := range verbs {
			c, cancel := call()
			r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(c, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: gv.Group, Version: gv.Version, Resource: resource}},
			}, metav1.CreateOptions{})
			cancel()
			if err != nil || !r.Status.Allowed {
				denied = append(denied, verb)
			}
		}
		rbac := fmt.Sprintf("rbac %s %s", k.apiVersion, resource)
		if len(denied) > 0 {
			out2 = append(out2, res(rbac, false, "not allowed to %s %s.%s; grant them to ferry's user in a ClusterRole", strings.Join(denied, ", "), resource, gv.Group))
		} else {
			out2 = append(out2, res(rbac, true, ""))
		}
	}
	nsNames := make([]string, 0, len(namespaces))
	for ns := range namespaces {
		nsNames = append(nsNames, ns)
	}
	sort.Strings(nsNames)
	for _, ns := range nsNames {
		c, cancel := call()
		_, err := client.CoreV1().Namespaces().Get(c, ns, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			out2 = append(out2, res("namespace "+ns, false, "namespace %s does not exist; the services of the plan live there, so create it (ferry does not)", ns))
		default:
			out2 = append(out2, res("namespace "+ns, err == nil, "%s", errText(err)))
		}
	}
	for _, m := range repo.Migrations {
		if m.Provider != plans.Linkerd {
			continue
		}
		peer := ""
		switch cluster {
		case m.From:
			peer = m.To
		case m.To:
			peer = m.From
		default:
			continue
		}
		c, cancel := call()
		_, err := dyn.Resource(linkGVR).Namespace(LinkNamespace).Get(c, peer, metav1.GetOptions{})
		cancel()
		check := fmt.Sprintf("linkerd link to %s", peer)
		switch {
		case apierrors.IsNotFound(err):
			out2 = append(out2, res(check, false, "no Link %s/%s; run `linkerd multicluster link --cluster-name %s` against %s and apply it here", LinkNamespace, peer, peer, peer))
		default:
			out2 = append(out2, res(check, err == nil, "%s", errText(err)))
		}
	}
	return out2
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Failed reports whether any result failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if !r.OK {
			return true
		}
	}
	return false
}
