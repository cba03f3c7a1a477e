package renderer

// mcs renders the Multi-Cluster Services API. A ServiceExport of a Service
// makes a ServiceImport of the same name whose endpoints are the pods of
// every cluster that exports that name. Were the apex exported from both
// clusters, the import would hold both clusters' pods and no weight would
// mean what it says. So each cluster exports a local-only Service
// "<svc>-<cluster>" selecting its pods; the ServiceImport "<svc>-<peer>"
// then holds exactly the peer's pods. The split is a GAMMA HTTPRoute on the
// apex between the apex itself (its endpoints) and that ServiceImport.
type mcs struct{}

const mcsAPIVersion = "multicluster.x-k8s.io/v1alpha1"

func (mcs) render(s *side) ([]*object, error) {
	port, err := s.port()
	if err != nil {
		return nil, err
	}
	localName := name(s.svc.Name, s.cluster)
	leaf, err := s.localService(localName, "http", nil, protectSpec)
	if err != nil {
		return nil, err
	}
	export := s.owned(mcsAPIVersion, "ServiceExport", localName, nil, nil, protectLabels)
	remoteName := name(s.svc.Name, s.peer)
	rt, err := s.route(httpRoute,
		backend{name: s.svc.Name, port: port, weight: s.localWeight()},
		backend{group: "multicluster.x-k8s.io", kind: "ServiceImport", name: remoteName, port: port, weight: s.remoteWeight()})
	if err != nil {
		return nil, err
	}
	return []*object{leaf, export, rt}, nil
}
