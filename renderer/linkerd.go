package renderer

import "fmt"

// linkerd renders Linkerd multicluster: an export and, in both clusters, a
// split of the service's own name between this cluster's pods and the
// mirror of the peer's export ("<exported>-<peer>", made by Linkerd's
// service mirror).
//
// With gateway-based mirroring (export "exported", the default) a request
// to a mirror enters the peer through its gateway, and the gateway routes
// it like any client of the exported name: had the apex Service been
// exported, the peer's split would apply again and could send the request
// back (linkerd/linkerd2#6569, "508 loop detected"). So ferry exports a
// local-only Service "<svc>-local" that selects the pods, and splits to
// "<svc>-local" and "<svc>-local-<peer>". With remote-discovery the client
// proxy talks to the peer's pods directly, no split of the peer is ever
// consulted, and the existing Service is exported as is: ferry labels it
// (a partial object) and splits to "<svc>" and "<svc>-<peer>".
type linkerd struct{}

const (
	linkerdExportLabel = "mirror.linkerd.io/exported"
	smiAPIVersion      = "split.smi-spec.io/v1alpha2"
)

var protectLinkerdLeaf = protectPaths([]string{linkerdExportLabel}, []string{"spec"})

func (linkerd) render(s *side) ([]*object, error) {
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	var objs []*object
	var local, remote backend
	switch s.m.Linkerd.Export {
	case "", "exported":
		leaf := name(s.svc.Name, "local")
		svc, err := s.localService(leaf, "http", mapping{{linkerdExportLabel, "true"}}, protectLinkerdLeaf)
		if err != nil {
			return nil, err
		}
		objs = append(objs, svc)
		local = backend{name: leaf, port: port}
		remote = backend{name: name(leaf, s.peer), port: port}
	case "remote-discovery":
		objs = append(objs, s.partialService(mapping{{linkerdExportLabel, "remote-discovery"}}, nil))
		local = backend{name: s.svc.Name, port: port}
		remote = backend{name: name(s.svc.Name, s.peer), port: port}
	default:
		return nil, fmt.Errorf("linkerd export %q: expected exported or remote-discovery", s.m.Linkerd.Export)
	}
	if err := checkName(remote.name); err != nil {
		return nil, fmt.Errorf("mirror of %s in %s: %w", remote.name, s.cluster, err)
	}
	local.weight, remote.weight = s.localWeight(), s.remoteWeight()

	switch s.m.Linkerd.Split {
	case "", "smi":
		if err := checkWeights("TrafficSplit "+s.svc.Name, local, remote); err != nil {
			return nil, err
		}
		spec := mapping{
			{"backends", seq{
				mapping{{"service", local.name}, {"weight", local.weight}},
				mapping{{"service", remote.name}, {"weight", remote.weight}},
			}},
			{"service", s.svc.Name},
		}
		objs = append(objs, s.owned(smiAPIVersion, "TrafficSplit", s.svc.Name, nil, spec, protectSpec))
	case "httproute":
		rt, err := s.route(httpRoute, local, remote)
		if err != nil {
			return nil, err
		}
		objs = append(objs, rt)
	default:
		return nil, fmt.Errorf("linkerd split %q: expected smi or httproute", s.m.Linkerd.Split)
	}
	return objs, nil
}
