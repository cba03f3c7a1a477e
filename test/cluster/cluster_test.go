package cluster_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/test/cluster"
)

// TestVersionsMatchTestbin keeps the versions the package looks for equal to
// the ones test/testbin.sh builds.
func TestVersionsMatchTestbin(t *testing.T) {
	b, err := os.ReadFile("../testbin.sh")
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]string{"K8S_VERSION": cluster.KubernetesVersion, "ETCD_VERSION": cluster.EtcdVersion} {
		m := regexp.MustCompile(`(?m)^` + v + `=(\S+)`).FindSubmatch(b)
		if m == nil {
			t.Errorf("testbin.sh sets no %s", v)
			continue
		}
		if got := string(m[1]); got != want {
			t.Errorf("testbin.sh builds %s=%s, package cluster looks for %s", v, got, want)
		}
	}
}

func TestStartRefusesBadNames(t *testing.T) {
	for _, names := range [][]string{nil, {"a", "a"}, {"East"}, {""}} {
		if env, err := cluster.Start(t.Context(), names...); err == nil {
			_ = env.Stop()
			t.Errorf("Start(%q) = nil error, want one", names)
		}
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	t.Setenv("FERRY_TESTBIN", t.TempDir())
	_, err := cluster.Start(t.Context(), "a")
	if !errors.Is(err, cluster.ErrNoBinaries) {
		t.Fatalf("Start = %v, want ErrNoBinaries", err)
	}
	if want := `run "make testbin"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %s", err, want)
	}
}

// provider objects, one of each kind the providers need, as ferry would
// write them.
var providerObjects = []string{`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: checkout}
spec:
  parentRefs: [{name: mesh, kind: Service, group: "", port: 8080}]
  rules:
  - backendRefs:
    - {name: checkout, port: 8080, weight: 90}
    - {name: checkout-west, port: 8080, weight: 10}
`, `
apiVersion: split.smi-spec.io/v1alpha2
kind: TrafficSplit
metadata: {name: checkout}
spec:
  service: checkout
  backends:
  - {service: checkout, weight: 90}
  - {service: checkout-west, weight: 10}
`, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: checkout}
spec:
  hosts: [checkout]
  http:
  - route:
    - destination: {host: checkout.shop.svc.cluster.local}
      weight: 90
    - destination: {host: checkout.shop.svc.west.global}
      weight: 10
`, `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: checkout}
spec:
  host: checkout
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`, `
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: checkout}
`, `
apiVersion: networking.kubeslice.io/v1beta1
kind: ServiceExport
metadata: {name: checkout}
spec:
  slice: shop
  selector: {matchLabels: {app: checkout}}
  ports: [{name: http, containerPort: 8080}]
  aliases: [checkout.shop.svc.cluster.local]
`, `
apiVersion: multicluster.linkerd.io/v1alpha1
kind: Link
metadata: {name: west}
spec:
  targetClusterName: west
  targetClusterDomain: cluster.local
  clusterCredentialsSecret: cluster-credentials-west
  gatewayAddress: 127.0.0.1
  gatewayPort: "4143"
  selector: {matchLabels: {mirror.linkerd.io/exported: "true"}}
`}

// served lists resources the provider CRDs must serve.
var served = []schema.GroupVersionResource{
	{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"},
	{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"},
	{Group: "split.smi-spec.io", Version: "v1alpha1", Resource: "trafficsplits"},
	{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"},
	{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
	{Group: "networking.istio.io", Version: "v1beta1", Resource: "virtualservices"},
	{Group: "networking.istio.io", Version: "v1alpha3", Resource: "destinationrules"},
	{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"},
	{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"},
	{Group: "networking.kubeslice.io", Version: "v1beta1", Resource: "serviceexports"},
	{Group: "multicluster.linkerd.io", Version: "v1alpha1", Resource: "links"},
}

func TestClusters(t *testing.T) {
	start := time.Now()
	env := cluster.StartT(t, "east", "west")
	t.Logf("2 clusters up in %s", time.Since(start).Round(time.Millisecond))

	if got := len(env.Clusters); got != 2 {
		t.Fatalf("got %d clusters, want 2", got)
	}
	ctx := t.Context()
	for _, name := range env.Names() {
		c := env.Clusters[name]
		t.Run(name, func(t *testing.T) {
			if c.Name != name {
				t.Errorf("Name = %q, want %q", c.Name, name)
			}
			for _, gvr := range served {
				list, err := c.Client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
				if err != nil {
					t.Errorf("discovery %s: %v", gvr.GroupVersion(), err)
					continue
				}
				found := false
				for _, r := range list.APIResources {
					found = found || r.Name == gvr.Resource
				}
				if !found {
					t.Errorf("%s does not serve %s", gvr.GroupVersion(), gvr.Resource)
				}
			}

			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
			if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create namespace: %v", err)
			}
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop"},
				Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "checkout"},
					Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}},
				},
			}
			got, err := c.Client.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create service: %v", err)
			}
			if got.Spec.ClusterIP == "" {
				t.Errorf("service got no cluster IP")
			}

			for _, doc := range providerObjects {
				u := &unstructured.Unstructured{}
				if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
					t.Fatal(err)
				}
				gvk := u.GroupVersionKind()
				res, err := c.Client.Discovery().ServerResourcesForGroupVersion(gvk.GroupVersion().String())
				if err != nil {
					t.Errorf("%s: %v", gvk, err)
					continue
				}
				var gvr schema.GroupVersionResource
				for _, r := range res.APIResources {
					if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
						gvr = gvk.GroupVersion().WithResource(r.Name)
					}
				}
				if _, err := c.Dynamic.Resource(gvr).Namespace("shop").Create(ctx, u, metav1.CreateOptions{}); err != nil {
					t.Errorf("create %s %s: %v", gvk.Kind, u.GetName(), err)
				}
			}
		})
	}

	t.Run("kubeconfig", func(t *testing.T) {
		for _, name := range env.Names() {
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
				&clientcmd.ClientConfigLoadingRules{ExplicitPath: env.Kubeconfig},
				&clientcmd.ConfigOverrides{CurrentContext: name},
			).ClientConfig()
			if err != nil {
				t.Fatalf("context %s: %v", name, err)
			}
			if cfg.Host != env.Clusters[name].Config.Host {
				t.Errorf("context %s: server %s, want %s", name, cfg.Host, env.Clusters[name].Config.Host)
			}
			cs := kubernetes.NewForConfigOrDie(cfg)
			if _, err := cs.CoreV1().Services("shop").Get(ctx, "checkout", metav1.GetOptions{}); err != nil {
				t.Errorf("context %s: get service: %v", name, err)
			}
		}
	})

	t.Run("clusters are separate", func(t *testing.T) {
		east, west := env.Clusters["east"], env.Clusters["west"]
		if east.Config.Host == west.Config.Host {
			t.Fatalf("both clusters at %s", east.Config.Host)
		}
		if _, err := east.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-east"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := west.Client.CoreV1().ConfigMaps("default").Get(ctx, "only-east", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("west get only-east: %v, want not found", err)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		c := env.Clusters["east"]

		anon := kubernetes.NewForConfigOrDie(rest.AnonymousClientConfig(c.Config))
		_, err := anon.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
			t.Errorf("anonymous list secrets: %v, want forbidden or unauthorized", err)
		}

		// west's admin certificate is signed by west's CA, which east does
		// not trust.
		foreign := rest.CopyConfig(c.Config)
		w := env.Clusters["west"].Config
		foreign.CertData, foreign.KeyData = w.CertData, w.KeyData
		_, err = kubernetes.NewForConfigOrDie(foreign).CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{})
		var status apierrors.APIStatus
		if err == nil || (errors.As(err, &status) && !apierrors.IsUnauthorized(err)) {
			t.Errorf("list secrets with a foreign certificate: %v, want unauthorized", err)
		}

		cfg, err := c.NewUser("alice", "shop-readers")
		if err != nil {
			t.Fatal(err)
		}
		alice := kubernetes.NewForConfigOrDie(cfg)
		if _, err := alice.CoreV1().Services("shop").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("alice lists services before any binding: %v, want forbidden", err)
		}

		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "service-reader", Namespace: "shop"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list"}}},
		}
		if _, err := c.Client.RbacV1().Roles("shop").Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-readers", Namespace: "shop"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "service-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "shop-readers"}},
		}
		if _, err := c.Client.RbacV1().RoleBindings("shop").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The authorizer sees the binding through an informer: wait for it.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			_, err = alice.CoreV1().Services("shop").List(wctx, metav1.ListOptions{})
			if err == nil || !apierrors.IsForbidden(err) || wctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("alice lists services after the binding: %v", err)
		}
		if _, err := alice.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("alice lists services in default: %v, want forbidden", err)
		}
		if _, err := alice.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("alice lists secrets: %v, want forbidden", err)
		}
	})
}
