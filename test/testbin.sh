#!/usr/bin/env bash
# testbin.sh builds the binaries and collects the CRDs that the real-cluster
# test harness (test/cluster) runs: kube-apiserver and etcd, built from their
# Go modules (nothing prebuilt is downloaded), and the CRDs of every traffic
# provider ferry renders for, taken from the providers' own Go modules.
#
# Everything lands in one cache directory outside the checkout:
#
#   ${FERRY_TESTBIN:-$HOME/.cache/ferry/testbin}/k8s-v<K8S>-etcd-v<ETCD>/
#       kube-apiserver
#       etcd
#       crds/<source>/*.yaml
#
# The script is idempotent: it does nothing for what already exists. The
# first run takes 5 to 8 minutes on 2 cores, later runs well under a second.
# Package test/cluster finds the same directory the same way (cluster.Dir);
# its KubernetesVersion and EtcdVersion are kept equal to the versions below
# by a test that reads this file.
set -euo pipefail

# ---- versions: the one place they are written down -------------------------
# test/tools/go.mod and test/tools/etcd/go.mod must require the same
# versions; the script checks that they do.
K8S_VERSION=v1.36.3          # k8s.io/kubernetes; staging modules at v0.36.3
ETCD_VERSION=v3.6.16         # go.etcd.io/etcd/server/v3
GATEWAY_API_VERSION=v1.6.3   # sigs.k8s.io/gateway-api (v1.7 needs Go 1.27)
MCS_API_VERSION=v0.5.2       # sigs.k8s.io/mcs-api
SMI_VERSION=v0.5.0           # github.com/servicemeshinterface/smi-sdk-go (its only tag)
ISTIO_API_VERSION=v1.31.1    # istio.io/api
KUSTOMIZE_VERSION=v5.8.1     # sigs.k8s.io/kustomize/kustomize/v5, for the byte-identity test
# Not on the module proxy, so written by us under test/crds/ (embedded by
# package test/crds): Linkerd's Link (only in Linkerd's Helm chart) and
# KubeSlice's ServiceExport (github.com/kubeslice/worker-operator).
# ------------------------------------------------------------------------------

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${FERRY_TESTBIN:-$HOME/.cache/ferry/testbin}"
dir="$root/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"

export GOWORK=off GOFLAGS=-mod=readonly GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf 'testbin: %s\n' "$*" >&2; }

# require_version MODDIR MODULE VERSION fails when MODDIR's go.mod selects
# another version of MODULE than the one written above.
require_version() {
	local got
	got="$(cd "$1" && go list -m -f '{{.Version}}' "$2")"
	if [[ "$got" != "$3" ]]; then
		log "$1/go.mod selects $2 $got, testbin.sh says $3: update one of them"
		exit 1
	fi
}

# build MODDIR PKG NAME [LDFLAGS] builds PKG from the tools module in MODDIR
# into $dir/NAME, through a temporary file so an interrupted build never
# leaves a binary that looks finished.
build() {
	local moddir="$1" pkg="$2" name="$3" ldflags="${4:-}"
	if [[ -x "$dir/$name" ]]; then
		return
	fi
	log "building $name from $pkg (several minutes the first time)"
	local start=$SECONDS
	(cd "$moddir" && go build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" -o "$dir/.$name.tmp" "$pkg")
	mv -f "$dir/.$name.tmp" "$dir/$name"
	log "built $name in $((SECONDS - start))s"
}

# moddir MODULE@VERSION prints the directory of a module fetched through the
# module proxy into the module cache.
moddir() {
	local d
	d="$(cd "$here/tools" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [[ -z "$d" || ! -d "$d" ]]; then
		log "go mod download $1 gave no directory"
		exit 1
	fi
	printf '%s\n' "$d"
}

# copy_crds DEST FILE... copies CRD manifests into crds/DEST.
copy_crds() {
	local dest="$dir/.crds.tmp/$1"
	shift
	mkdir -p "$dest"
	local f
	for f in "$@"; do
		install -m 0644 "$f" "$dest/$(basename "$f")"
	done
}

# crds collects the provider CRDs into $dir/crds, again whenever the versions
# above change.
crds() {
	local versions="gateway-api $GATEWAY_API_VERSION, mcs-api $MCS_API_VERSION, smi-sdk-go $SMI_VERSION, istio-api $ISTIO_API_VERSION"
	if [[ -f "$dir/crds/VERSIONS" && "$(cat "$dir/crds/VERSIONS")" == "$versions" ]]; then
		return
	fi
	log "collecting provider CRDs: $versions"
	rm -rf "$dir/.crds.tmp"
	mkdir -p "$dir/.crds.tmp"
	local d

	# Gateway API, standard channel: Gateway, GatewayClass, HTTPRoute,
	# GRPCRoute, ReferenceGrant, BackendTLSPolicy, ListenerSet, TCP/TLS/UDPRoute.
	# The channel also holds a ValidatingAdmissionPolicy (vap_safeupgrades),
	# which is not a CRD and is left out.
	d="$(moddir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
	copy_crds gateway-api "$d"/config/crd/standard/gateway.networking.k8s.io_*.yaml
	rm -f "$dir/.crds.tmp/gateway-api/"*vap*

	# Multi-Cluster Services API: ServiceExport, ServiceImport.
	d="$(moddir "sigs.k8s.io/mcs-api@$MCS_API_VERSION")"
	copy_crds mcs-api "$d"/config/crd/multicluster.x-k8s.io_*.yaml

	# SMI TrafficSplit. smi-sdk-go's split.yaml is an apiextensions v1beta1 CRD
	# serving v1alpha4 only; rewrite it as v1 serving what linkerd-smi serves.
	d="$(moddir "github.com/servicemeshinterface/smi-sdk-go@$SMI_VERSION")"
	mkdir -p "$dir/.crds.tmp/smi"
	(cd "$here/tools" && go run -trimpath ./crdconv -serve v1alpha1,v1alpha2 -storage v1alpha1) \
		< "$d/crds/split.yaml" > "$dir/.crds.tmp/smi/split.smi-spec.io_trafficsplits.yaml"

	# Istio networking, security, telemetry and extensions APIs in one file.
	d="$(moddir "istio.io/api@$ISTIO_API_VERSION")"
	copy_crds istio "$d"/kubernetes/customresourcedefinitions.gen.yaml

	printf '%s\n' "$versions" > "$dir/.crds.tmp/VERSIONS"
	rm -rf "$dir/crds"
	mv "$dir/.crds.tmp" "$dir/crds"
}

main() {
	mkdir -p "$dir"
	require_version "$here/tools" k8s.io/kubernetes "$K8S_VERSION"
	require_version "$here/tools/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"

	local minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	local kv="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
	kv+=" -X k8s.io/component-base/version.gitMajor=1"
	kv+=" -X k8s.io/component-base/version.gitMinor=$minor"
	kv+=" -X k8s.io/component-base/version.gitTreeState=clean"
	kv+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
	kv+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
	kv+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"

	build "$here/tools/etcd" go.etcd.io/etcd/server/v3 etcd
	build "$here/tools" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$kv"
	crds
	if [[ ! -x "$root/kustomize-$KUSTOMIZE_VERSION/kustomize" ]]; then
		echo "testbin: building kustomize $KUSTOMIZE_VERSION"
		GOBIN="$root/kustomize-$KUSTOMIZE_VERSION" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
	fi

	printf 'testbin: kube-apiserver %s, etcd %s and CRDs in\n%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$dir"
}

main "$@"
