// Package cluster starts real Kubernetes API servers on loopback for ferry's
// end-to-end tests: one kube-apiserver and one etcd per simulated cluster,
// with client-certificate authentication, RBAC authorization, and the CRDs of
// every traffic provider ferry renders for (Gateway API, SMI, Istio, MCS,
// KubeSlice, Linkerd multicluster) installed and Established.
//
// The binaries and most CRDs come from the cache that test/testbin.sh fills
// ("make testbin", about 8 minutes once); CRDs that no fetchable module ships
// come from package test/crds. Processes are started through
// controller-runtime's envtest, one Environment per cluster, in parallel.
//
// It is not a kubelet, scheduler or controller manager: nothing runs pods,
// allocates endpoints from pods, or garbage-collects. Tests create the
// objects those would (Services, EndpointSlices) themselves.
package cluster
