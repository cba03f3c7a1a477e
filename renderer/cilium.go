package renderer

import "fmt"

// cilium renders Cilium Cluster Mesh global services: annotations on the
// existing Service (a partial object) in both clusters. A global service's
// endpoints are the pods of every cluster sharing it; there is no split,
// so only weights 0 and 100 can be expressed:
//
//	weight 0:   from: shared, affinity local   to: not shared, affinity local
//	weight 100: from: not shared, affinity remote   to: shared, affinity local
//
// At 100 the from cluster's clients prefer the to cluster's pods and fall
// back to their own only when none is healthy; the to cluster no longer
// sees the from cluster's pods. No loop can form: endpoints are pods.
type cilium struct{}

const (
	ciliumGlobal   = "service.cilium.io/global"
	ciliumShared   = "service.cilium.io/shared"
	ciliumAffinity = "service.cilium.io/affinity"
)

func (cilium) render(s *side) ([]*object, error) {
	w := s.step.Weight
	if w != 0 && w != 100 {
		return nil, fmt.Errorf("cilium cannot split traffic by weight; step %d must be 0 or 100", w)
	}
	cut := w == 100
	shared, affinity := "true", "local"
	switch {
	case s.from && cut:
		shared, affinity = "false", "remote"
	case !s.from && !cut:
		shared = "false"
	}
	return []*object{s.partialService(nil, mapping{
		{ciliumAffinity, affinity},
		{ciliumGlobal, "true"},
		{ciliumShared, shared},
	})}, nil
}
