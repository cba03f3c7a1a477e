package renderer

import "fmt"

// kubeSlice renders KubeSlice: each cluster exports its pods on the slice
// as "<svc>-<cluster>" (a ServiceExport selects pods, not a Service), so
// "<svc>-<cluster>.<namespace>.svc.slice.local" resolves to that cluster's
// pods only. The split is a GAMMA HTTPRoute on the apex Service between the
// apex itself (in GAMMA a route's own parent as backend means its
// endpoints) and a local ExternalName Service "<svc>-<peer>" that points at
// the peer's slice name. The service's aliases are exported from both
// clusters, so callers that use them need not change.
type kubeSlice struct{}

const kubeSliceAPIVersion = "networking.kubeslice.io/v1beta1"

func (kubeSlice) render(s *side) ([]*object, error) {
	if s.m.KubeSlice.Slice == "" {
		return nil, fmt.Errorf("kubeslice: no slice named")
	}
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	target, err := s.targetPort()
	if err != nil {
		return nil, err
	}
	spec := mapping{}
	if len(s.svc.Aliases) > 0 {
		aliases := make(seq, len(s.svc.Aliases))
		for i, a := range s.svc.Aliases {
			aliases[i] = a
		}
		spec = append(spec, field{"aliases", aliases})
	}
	spec = append(spec,
		field{"ports", seq{mapping{
			{"containerPort", target},
			{"name", "http"},
			{"protocol", "TCP"},
		}}},
		field{"selector", mapping{{"matchLabels", s.podSelector()}}},
		field{"slice", s.m.KubeSlice.Slice},
	)
	export := s.owned(kubeSliceAPIVersion, "ServiceExport", name(s.svc.Name, s.cluster), nil, spec, protectSpec)

	remoteName := name(s.svc.Name, s.peer)
	ext := s.owned("v1", "Service", remoteName, nil,
		mapping{
			{"externalName", remoteName + "." + s.svc.Namespace + ".svc.slice.local"},
			{"ports", seq{mapping{
				{"name", "http"},
				{"port", target},
				{"protocol", "TCP"},
			}}},
			{"type", "ExternalName"},
		},
		protectSpec)

	rt, err := s.route(httpRoute,
		backend{name: s.svc.Name, port: port, weight: s.localWeight()},
		backend{name: remoteName, port: target, weight: s.remoteWeight()})
	if err != nil {
		return nil, err
	}
	return []*object{export, ext, rt}, nil
}
