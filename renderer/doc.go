// Package renderer turns plans and the step each service is at into, for
// every cluster, a Kustomize overlay and its built manifests.
//
// It is a pure function of its input: no cluster, clock or network. The
// same input gives the same bytes: objects in kustomize's legacy order,
// fields in the order `kustomize build` writes them. It does not decide
// steps (the engine does), apply anything (the applier does), or check
// objects against an API server.
//
// # Output
//
// For each cluster of the repository, a ClusterOutput holds the overlay
// (kustomization.yaml naming one file per service, <migration>/<namespace>.<name>.yaml)
// and the build of it. WriteDir writes OUT/<cluster>/ and
// OUT/<cluster>/manifests.yaml; `kubectl kustomize OUT/<cluster>` prints
// manifests.yaml byte for byte (a test runs it).
//
// Every object ferry owns carries app.kubernetes.io/managed-by: ferry,
// ferry.dev/migration and ferry.dev/service: <namespace>.<name>. A Service
// ferry only labels or annotates (the service's own Service, to export it
// or to weight it) is rendered as a partial object: apiVersion, kind, name,
// namespace and ferry's labels and annotations, plus ferry.dev/partial:
// "true" and no managed-by label; Object.Partial marks it so the applier
// never creates or deletes it.
//
// # Directions and weights
//
// A service at weight w (the share on the migration's to side) is rendered
// in both clusters: the from cluster's split keeps 100−w locally and sends
// w to the peer, the to cluster's keeps w and sends 100−w to the peer.
// Every split's weights sum to 100; the renderer returns an error
// otherwise. A mirror step copies its share of requests to the to side
// (Istio and the Gateway API providers only). A rolled-back service is
// simply rendered at the step the engine gives.
//
// # No loops between the two clusters
//
// A loop needs a request that a split sent to the peer to meet a split
// again there. The renderer never lets that happen: every split is
// attached to the service's own name (the apex) and its backends are
// names that resolve to pods, never to an apex:
//
//   - the local backend is a name for this cluster's pods only: a
//     local-only Service ferry renders that selects the pods
//     (<svc>-local for Linkerd, <svc>-<cluster> for Istio ambient, the
//     generic Gateway API provider and MCS), or the apex itself where the
//     API defines a route's own parent as its endpoints (GAMMA, SMI), or an
//     Istio DestinationRule subset of this cluster;
//   - the remote backend is the peer's export of such a pod-selecting name,
//     never of the peer's apex: the Linkerd mirror <svc>-local-<peer> (the
//     peer's gateway forwards to <svc>-local, which has no split; exporting
//     the apex instead is linkerd/linkerd2#6569, "508 loop detected"), the
//     Service <svc>-<peer> that only the peer defines (Istio ambient,
//     Gateway API), the ServiceImport <svc>-<peer> (MCS), the slice name
//     <svc>-<peer>.<ns>.svc.slice.local of a ServiceExport that selects the
//     peer's pods (KubeSlice, via a local ExternalName Service), or the
//     peer's subset (Istio sidecar: the client sidecar routes, the
//     east-west gateway passes the connection through to the pod).
//
// The one exception to "export a pod-selecting name" is Linkerd with
// remote-discovery, where the existing Service is exported as the plan
// says: there the client proxy connects to the peer's pods directly and no
// proxy of the peer routes the request, so the peer's split is never
// consulted. Cilium and external-dns render no split at all (global
// service endpoints and DNS records are pods and load balancers). A test
// follows every backend of every split across the two clusters, for every
// provider and step, and fails if it reaches a split.
//
// # Providers
//
// One file per provider, behind the provider interface:
//
//	linkerd       local-only Service <svc>-local labelled mirror.linkerd.io/exported
//	              (or a partial apex labelled remote-discovery), and a SMI
//	              TrafficSplit (split.smi-spec.io/v1alpha2) or an HTTPRoute
//	istio         ambient: local-only Service <svc>-<cluster> and an HTTPRoute;
//	              sidecar: VirtualService + DestinationRule (subsets by
//	              topology.istio.io/cluster); a wave's istioMode overrides
//	gateway-api   local-only Service <svc>-<cluster> and an HTTPRoute or GRPCRoute
//	kubeslice     ServiceExport <svc>-<cluster>, ExternalName Service <svc>-<peer>
//	              to the peer's slice name, HTTPRoute on the apex
//	mcs           local-only Service and ServiceExport <svc>-<cluster>, HTTPRoute
//	              on the apex to the apex and the ServiceImport <svc>-<peer>
//	cilium        partial Service annotated service.cilium.io/global, shared,
//	              affinity; weights 0 and 100 only
//	external-dns  partial Service annotated with hostname, set-identifier and
//	              aws-weight under both annotation prefixes
//
// Routes attached to a Service carry a catch-all rule (PathPrefix "/" for
// HTTP, a rule without matches for gRPC): such a route rejects requests no
// rule matches. Local-only Services select Service.PodSelector (default
// app: <name>) on Service.TargetPort (default Port).
//
// # User customization
//
// The plan repository's overlays/<cluster>/ (Repository.Overlays) is
// composed on top: ferry's overlay goes to ferry/, the user's files to the
// overlay's root, and ferry/ is put first in the user's kustomization's
// resources unless it is already there. The result is built with krusty.
// An overlay may add objects, labels, annotations, timeouts; it may not
// remove or rename ferry's objects nor change weights, backends, parents,
// mirrors, exports, ferry's labels, or anything of a partial object: the
// build is compared with ferry's objects field by field and the render
// fails with the cluster, object and field.
//
// # Speed
//
// krusty is quadratic in the number of resources (7.5 s for 4,000), so
// ferry does not run it when it has nothing to do. Without customization
// the renderer writes the bytes krusty would: each object is encoded as
// kustomize's Resource.AsYAML does (go-yaml v2 key order and scalar
// styles, see yaml.go) and the objects are put in kustomize's legacy order
// (order.go). Tests build the same overlays with krusty and with `kubectl
// kustomize` and compare bytes.
//
// A Renderer caches by content: a shard (one service's objects in one
// cluster) is keyed by every input it depends on, so a new plan revision
// re-renders only changed services, and a cluster whose shards are the
// same pointers as last time is not reassembled. When only bytes changed
// (a step moved), the cluster's object order and kustomization.yaml are
// reused. Customized clusters are built by krusty, once per change of their
// content, behind one mutex with panics turned into errors (kustomize keeps
// global state, kubernetes-sigs/kustomize#3659).
package renderer
