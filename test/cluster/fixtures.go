package cluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The harness runs no controller-manager and no mesh. Fixtures create what
// they would: Services with ready EndpointSlices, and the Linkerd Links a
// `linkerd multicluster link` leaves.

var linkGVR = schema.GroupVersionResource{Group: "multicluster.linkerd.io", Version: "v1alpha1", Resource: "links"}

// Serve creates, in each named cluster, namespace ns and for every service
// a Service (port 80, selector app=<name>) with one ready endpoint.
func (e *Env) Serve(t testing.TB, clusters []string, ns string, services ...string) {
	t.Helper()
	ctx := t.Context()
	for _, cl := range clusters {
		c := e.Clusters[cl].Client
		e.namespace(t, cl, ns)
		for _, name := range services {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80}}},
			}
			if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("cluster %s: %v", cl, err)
			}
			yes := true
			slice := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
			}
			if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("cluster %s: %v", cl, err)
			}
		}
	}
}

// Link creates in every cluster a Linkerd Link to every other cluster, in
// namespace linkerd-multicluster.
func (e *Env) Link(t testing.TB) {
	t.Helper()
	for _, cl := range e.names {
		e.namespace(t, cl, "linkerd-multicluster")
		for _, peer := range e.names {
			if peer == cl {
				continue
			}
			link := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "multicluster.linkerd.io/v1alpha1", "kind": "Link",
				"metadata": map[string]any{"name": peer, "namespace": "linkerd-multicluster"},
				"spec":     map[string]any{"targetClusterName": peer},
			}}
			_, err := e.Clusters[cl].Dynamic.Resource(linkGVR).Namespace("linkerd-multicluster").Create(t.Context(), link, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("cluster %s: link to %s: %v", cl, peer, err)
			}
		}
	}
}

func (e *Env) namespace(t testing.TB, cluster, ns string) {
	t.Helper()
	_, err := e.Clusters[cluster].Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("cluster %s: namespace %s: %v", cluster, ns, err)
	}
}
