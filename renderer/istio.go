package renderer

import "fmt"

// istio renders Istio multi-primary meshes in one of two modes.
//
// Ambient (Gateway API) mode: Istio merges Services of the same name and
// namespace across clusters, so the apex Service means "every cluster's
// pods". Each cluster gets a local-only Service "<svc>-<cluster>" that
// selects its own pods; since only that cluster defines it, the name means
// exactly that cluster's endpoints everywhere in the mesh. The HTTPRoute
// attached to the apex splits between "<svc>-<cluster>" and "<svc>-<peer>",
// neither of which has a route of its own.
//
// Sidecar mode: a VirtualService on the service's host routes to the
// DestinationRule subsets of the two clusters (label
// topology.istio.io/cluster). The client's sidecar picks the endpoint; the
// east-west gateway passes it through to the pod, so no VirtualService is
// evaluated twice.
//
// A wave moved to ambient renders no VirtualService or DestinationRule: the
// applier prunes the legacy objects, which are in ferry's inventory.
type istio struct{}

const (
	istioAPIVersion   = "networking.istio.io/v1"
	istioClusterLabel = "topology.istio.io/cluster"
)

var (
	protectVirtualService = protectPaths(nil,
		[]string{"spec", "hosts"},
		[]string{"spec", "http", "*", "route"},
		[]string{"spec", "http", "*", "mirror"},
		[]string{"spec", "http", "*", "mirrorPercentage"})
	protectDestinationRule = protectPaths(nil,
		[]string{"spec", "host"},
		[]string{"spec", "subsets"})
)

func (istio) render(s *side) ([]*object, error) {
	switch s.istioMode {
	case "ambient":
		return gammaSplit(s, httpRoute)
	case "sidecar":
		return istioSidecar(s)
	default:
		return nil, fmt.Errorf("istio mode %q: expected ambient or sidecar", s.istioMode)
	}
}

// gammaSplit renders local-only Services and a route for meshes that merge
// Services across clusters (Istio ambient, the generic GAMMA provider).
func gammaSplit(s *side, kind string) ([]*object, error) {
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	portName := "http"
	if kind == grpcRoute {
		portName = "grpc"
	}
	localName := name(s.svc.Name, s.cluster)
	leaf, err := s.localService(localName, portName, nil, protectSpec)
	if err != nil {
		return nil, err
	}
	remoteName := name(s.svc.Name, s.peer)
	if err := checkName(remoteName); err != nil {
		return nil, err
	}
	rt, err := s.route(kind,
		backend{name: localName, port: port, weight: s.localWeight()},
		backend{name: remoteName, port: port, weight: s.remoteWeight()})
	if err != nil {
		return nil, err
	}
	return []*object{leaf, rt}, nil
}

func istioSidecar(s *side) ([]*object, error) {
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	host := s.svc.Name + "." + s.svc.Namespace + ".svc.cluster.local"
	dest := func(subset string) mapping {
		return mapping{
			{"host", host},
			{"port", mapping{{"number", port}}},
			{"subset", subset},
		}
	}
	local := backend{name: s.cluster, weight: s.localWeight()}
	remote := backend{name: s.peer, weight: s.remoteWeight()}
	if err := checkWeights("VirtualService "+s.svc.Name, local, remote); err != nil {
		return nil, err
	}
	route := mapping{
		{"route", seq{
			mapping{{"destination", dest(local.name)}, {"weight", local.weight}},
			mapping{{"destination", dest(remote.name)}, {"weight", remote.weight}},
		}},
	}
	if s.step.Mirror > 0 {
		route = append(route,
			field{"mirror", dest(s.m.To)},
			field{"mirrorPercentage", mapping{{"value", s.step.Mirror}}})
	}
	vs := s.owned(istioAPIVersion, "VirtualService", s.svc.Name, nil,
		mapping{
			{"hosts", seq{host}},
			{"http", seq{route}},
		},
		protectVirtualService)
	subset := func(cluster string) mapping {
		return mapping{
			{"labels", mapping{{istioClusterLabel, cluster}}},
			{"name", cluster},
		}
	}
	dr := s.owned(istioAPIVersion, "DestinationRule", s.svc.Name, nil,
		mapping{
			{"host", host},
			{"subsets", seq{subset(s.m.From), subset(s.m.To)}},
		},
		protectDestinationRule)
	return []*object{vs, dr}, nil
}
