package renderer

import "fmt"

// externalDNS renders weighted DNS records: annotations on the existing
// Service (a partial object) in each cluster, one record per cluster under
// the same hostname, told apart by the set identifier (the cluster name)
// and weighted by that cluster's share. Both annotation prefixes are
// written: external-dns up to v0.21 reads external-dns.alpha.kubernetes.io/,
// v0.22 reads only external-dns.kubernetes.io/ by default.
type externalDNS struct{}

var externalDNSPrefixes = []string{"external-dns.alpha.kubernetes.io/", "external-dns.kubernetes.io/"}

func (externalDNS) render(s *side) ([]*object, error) {
	host := s.svc.Hostname
	if host == "" {
		if s.m.ExternalDNS.Domain == "" {
			return nil, fmt.Errorf("external-dns: the service has no hostname and the migration no domain")
		}
		host = s.svc.Name + "." + s.svc.Namespace + "." + s.m.ExternalDNS.Domain
	}
	weight := s.toWeight()
	if s.from {
		weight = s.fromWeight()
	}
	var ann mapping
	for _, p := range externalDNSPrefixes {
		ann = append(ann,
			field{p + "aws-weight", itoa(weight)},
			field{p + "hostname", host},
			field{p + "set-identifier", s.cluster},
		)
	}
	return []*object{s.partialService(nil, ann)}, nil
}
