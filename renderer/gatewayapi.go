package renderer

import "fmt"

// gatewayAPI renders the generic GAMMA provider for any conformant mesh
// whose multicluster discovery merges Services across clusters: the same
// local-only Services and split as Istio's ambient mode, with an HTTPRoute
// (catch-all PathPrefix "/" rule) or a GRPCRoute (a rule without matches,
// which matches every request).
type gatewayAPI struct{}

func (gatewayAPI) render(s *side) ([]*object, error) {
	switch s.m.GatewayAPI.Route {
	case "", "http":
		return gammaSplit(s, httpRoute)
	case "grpc":
		return gammaSplit(s, grpcRoute)
	default:
		return nil, fmt.Errorf("gateway-api route %q: expected http or grpc", s.m.GatewayAPI.Route)
	}
}
