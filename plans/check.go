package plans

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"github.com/robfig/cron/v3"
)

// CronParser is the one cron dialect of ferry: standard five fields plus
// descriptors such as @hourly; a CRON_TZ= or TZ= prefix is refused in favour
// of window.timezone.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// checkDNSLabel returns why s is not a DNS-1123 label, or "".
func checkDNSLabel(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > 63:
		return fmt.Sprintf("is %d characters; Kubernetes names are at most 63", len(s))
	case !dns1123Label.MatchString(s):
		return "is not a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	}
	return ""
}

// checker runs the semantic checks CUE cannot express.
type checker struct {
	d *decoder
}

func (c *checker) errorf(path []string, format string, args ...any) {
	c.d.errorf(path, format, args...)
}

func check(repo *Repository, data cue.Value) Errors {
	c := &checker{d: &decoder{v: data}}
	for _, name := range repo.ClusterNames() {
		if why := checkDNSLabel(name); why != "" {
			c.errorf([]string{"clusters", name}, "cluster name %q %s", name, why)
		}
	}
	for cl := range repo.Overlays {
		if repo.Clusters[cl] == nil {
			c.errorf(nil, "overlays/%s: no cluster named %q; overlay directories are named after clusters (%s)", cl, cl, strings.Join(repo.ClusterNames(), ", "))
		}
	}
	owner := map[string]string{} // service ref -> migration/wave that moves it
	for _, m := range repo.Migrations {
		c.migration(repo, m, owner)
	}
	c.mirrorCollisions(repo)
	return c.d.errs
}

func (c *checker) migration(repo *Repository, m *Migration, owner map[string]string) {
	at := func(s ...string) []string { return append([]string{"migrations", m.Name}, s...) }
	if why := checkDNSLabel(m.Name); why != "" {
		c.errorf(at(), "migration name %q %s", m.Name, why)
	}
	known := strings.Join(repo.ClusterNames(), ", ")
	if repo.Clusters[m.From] == nil {
		c.errorf(at("from"), "unknown cluster %q; expected one of the clusters defined under clusters: %s", m.From, known)
	}
	if repo.Clusters[m.To] == nil {
		c.errorf(at("to"), "unknown cluster %q; expected one of the clusters defined under clusters: %s", m.To, known)
	}
	if m.From == m.To {
		c.errorf(at("to"), "%q is also the from cluster; a migration moves services between two different clusters", m.To)
	}

	c.steps(m, at)

	switch m.Provider {
	case KubeSlice:
		if m.KubeSlice.Slice == "" {
			c.errorf(at("provider"), "provider kubeslice needs kubeslice.slice, the name of the slice services are exported on")
		}
	case ExternalDNS:
		if m.ExternalDNS.Domain == "" {
			for _, s := range m.Services() {
				if s.Hostname == "" {
					c.errorf(at("services", s.Ref()), "provider external-dns needs a hostname for %s: set services.%q.hostname or externalDNS.domain", s.Ref(), s.Ref())
				}
			}
		}
	}

	for i, s := range m.Window.Schedules {
		if _, err := CronParser.Parse(s); err != nil {
			c.errorf(at("window", "schedule", fmt.Sprint(i)), "%q is not a cron expression: %v; expected five fields (minute hour day-of-month month day-of-week), e.g. \"*/15 9-16 * * 1-5\"", s, err)
		} else if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
			c.errorf(at("window", "schedule", fmt.Sprint(i)), "%q sets a time zone; set window.timezone instead", s)
		}
	}
	for i, dn := range m.Window.Deny {
		if dn.Cron == "" {
			continue
		}
		if _, err := CronParser.Parse(dn.Cron); err != nil {
			c.errorf(at("window", "deny", fmt.Sprint(i), "cron"), "%q is not a cron expression: %v; expected five fields, e.g. \"0 0 * * 5\"", dn.Cron, err)
		}
	}

	weights := map[int]bool{}
	for _, s := range m.Steps {
		weights[s.Weight] = true
	}
	c.gates(repo, m, at("gates"), m.Gates, weights)

	waveIndex := map[string]int{}
	svcWave := map[string]int{}
	for wi, w := range m.Waves {
		wp := at("waves", fmt.Sprint(wi))
		if prev, dup := waveIndex[w.Name]; dup {
			c.errorf(append(wp, "name"), "wave %q is also waves[%d]; wave names are unique within a migration", w.Name, prev)
		}
		waveIndex[w.Name] = wi
		if len(w.Services) == 0 && w.Selector == nil {
			c.errorf(wp, "wave %q has no services and no selector; expected services: [namespace/name, ...]", w.Name)
		}
		if w.IstioMode != "" && m.Provider != Istio {
			c.errorf(append(wp, "istioMode"), "istioMode applies to provider istio; this migration uses %s", m.Provider)
		}
		c.gates(repo, m, append(wp, "gates"), w.Gates, weights)
		for si, s := range w.Services {
			sp := append(append([]string(nil), wp...), "services", fmt.Sprint(si))
			ref := s.Ref()
			if why := checkDNSLabel(s.Namespace); why != "" {
				c.errorf(sp, "namespace %q %s", s.Namespace, why)
			}
			if why := checkDNSLabel(s.Name); why != "" {
				c.errorf(sp, "service name %q %s", s.Name, why)
			}
			where := fmt.Sprintf("migration %s, wave %s", m.Name, w.Name)
			if prev, dup := owner[ref]; dup {
				c.errorf(sp, "%s is already moved by %s; a service belongs to one wave of one migration", ref, prev)
				continue
			}
			owner[ref] = where
			svcWave[ref] = wi
		}
	}
	for ref := range m.serviceSettingsRefs(c.d.v) {
		if _, ok := svcWave[ref]; !ok {
			c.errorf(at("services", ref), "settings for %s, which no wave of this migration lists; add it to a wave or remove the settings", ref)
		}
	}
	c.dependsOn(m, at, svcWave)
	for i, a := range m.Approvals {
		ap := at("approvals", fmt.Sprint(i))
		w := m.Wave(a.Wave)
		if w == nil {
			c.errorf(append(ap, "wave"), "unknown wave %q; expected one of %s", a.Wave, strings.Join(waveNames(m), ", "))
			continue
		}
		if a.Service != "" && !slices.ContainsFunc(w.Services, func(s *Service) bool { return s.Ref() == a.Service }) {
			c.errorf(append(ap, "service"), "%s is not in wave %q", a.Service, a.Wave)
		}
		if a.Step != 0 && !weights[a.Step] {
			c.errorf(append(ap, "step"), "%d is not a step of this migration; expected one of %s", a.Step, stepList(m))
		}
	}
}

// serviceSettingsRefs lists the keys of migrations.<m>.services as the user
// wrote them (the typed model only keeps settings of listed services).
func (m *Migration) serviceSettingsRefs(data cue.Value) map[string]bool {
	out := map[string]bool{}
	v := data.LookupPath(cue.MakePath(cue.Str("migrations"), cue.Str(m.Name), cue.Str("services")))
	it, err := v.Fields()
	if err != nil {
		return out
	}
	for it.Next() {
		out[it.Selector().Unquoted()] = true
	}
	return out
}

func waveNames(m *Migration) []string {
	var out []string
	for _, w := range m.Waves {
		out = append(out, w.Name)
	}
	return out
}

func stepList(m *Migration) string {
	var out []string
	for _, s := range m.Steps {
		if s.Mirror == 0 {
			out = append(out, fmt.Sprint(s.Weight))
		}
	}
	return strings.Join(out, ", ")
}

func (c *checker) steps(m *Migration, at func(...string) []string) {
	// m.Steps has the implicit 0 first; the user's index is one less when
	// the user did not write the 0.
	userWroteZero := firstIsZero(c.d.v, m.Name)
	userIdx := func(i int) int {
		if userWroteZero {
			return i
		}
		return i - 1
	}
	prevWeight, prevMirror := 0, 0
	for i := 1; i < len(m.Steps); i++ {
		s := m.Steps[i]
		p := at("steps", fmt.Sprint(userIdx(i)))
		if s.Mirror > 0 {
			if !m.Provider.CanMirror() {
				c.errorf(p, "mirror step with provider %s, which cannot mirror traffic; mirror steps need provider istio or gateway-api", m.Provider)
			}
			if prevMirror > 0 && s.Mirror <= prevMirror {
				c.errorf(p, "mirror %d is not greater than the previous mirror step %d; mirror steps must increase", s.Mirror, prevMirror)
			}
			prevMirror = s.Mirror
			continue
		}
		prevMirror = 0
		if s.Weight <= prevWeight {
			c.errorf(p, "%d is not greater than the previous step %d; steps must strictly increase and end at 100", s.Weight, prevWeight)
		}
		if !m.Provider.CanWeight() && s.Weight != 100 {
			c.errorf(p, "step %d with provider %s, which balances across clusters without weights; steps can only be [0, 100]", s.Weight, m.Provider)
		}
		prevWeight = max(prevWeight, s.Weight)
	}
	if last := m.Steps[len(m.Steps)-1]; last.Weight != 100 || last.Mirror != 0 {
		p := at("steps")
		if len(m.Steps) > 1 {
			p = at("steps", fmt.Sprint(userIdx(len(m.Steps)-1)))
		}
		c.errorf(p, "the last step is %s; steps must strictly increase and end at 100", last)
	}
}

func firstIsZero(data cue.Value, migration string) bool {
	v := data.LookupPath(cue.MakePath(cue.Str("migrations"), cue.Str(migration), cue.Str("steps"), cue.Index(0)))
	n, err := v.Int64()
	return err == nil && n == 0
}

func (c *checker) gates(repo *Repository, m *Migration, path []string, gs []Gate, weights map[int]bool) {
	for i, g := range gs {
		gp := append(append([]string(nil), path...), fmt.Sprint(i))
		for j, w := range g.Steps {
			if !weights[w] {
				c.errorf(append(gp, "steps", fmt.Sprint(j)), "%d is not a step of this migration; expected one of %s", w, stepList(m))
			}
		}
		if g.Prometheus == nil {
			continue
		}
		cl := g.Prometheus.Cluster
		if cl == "" {
			cl = m.To
		}
		c1 := repo.Clusters[cl]
		switch {
		case c1 == nil:
			c.errorf(append(gp, "prometheus", "cluster"), "unknown cluster %q; expected one of %s", cl, strings.Join(repo.ClusterNames(), ", "))
		case c1.Prometheus == "":
			c.errorf(append(gp, "prometheus"), "gate %q queries the Prometheus of cluster %s, which has none; set clusters.%s.prometheus", g.Name, cl, cl)
		}
		if g.Prometheus.Baseline != 0 {
			if f := repo.Clusters[m.From]; f != nil && f.Prometheus == "" {
				c.errorf(append(gp, "prometheus", "baseline"), "gate %q compares with the from cluster %s, which has no Prometheus; set clusters.%s.prometheus", g.Name, m.From, m.From)
			}
		}
	}
}

// dependsOn checks references and cycles; a cycle is named in full.
func (c *checker) dependsOn(m *Migration, at func(...string) []string, svcWave map[string]int) {
	deps := map[string][]string{}
	for _, s := range m.Services() {
		for j, d := range s.DependsOn {
			p := at("services", s.Ref(), "dependsOn", fmt.Sprint(j))
			dw, ok := svcWave[d]
			switch {
			case !ok:
				c.errorf(p, "%s depends on %s, which no wave of migration %s lists", s.Ref(), d, m.Name)
			case d == s.Ref():
				c.errorf(p, "%s depends on itself", s.Ref())
			case dw > svcWave[s.Ref()]:
				c.errorf(p, "%s (wave %s) depends on %s, which is in the later wave %s; move it to the same or an earlier wave", s.Ref(), m.Waves[svcWave[s.Ref()]].Name, d, m.Waves[dw].Name)
			default:
				deps[s.Ref()] = append(deps[s.Ref()], d)
			}
		}
	}
	// Depth-first search; report each cycle once, starting from its
	// smallest member so the message is stable.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			switch color[d] {
			case white:
				visit(d)
			case grey:
				i := slices.Index(stack, d)
				cyc := append([]string(nil), stack[i:]...)
				minI := 0
				for k := range cyc {
					if cyc[k] < cyc[minI] {
						minI = k
					}
				}
				cyc = append(cyc[minI:], cyc[:minI]...)
				key := strings.Join(cyc, ",")
				if !reported[key] {
					reported[key] = true
					c.errorf(at("services", cyc[0], "dependsOn"), "dependency cycle: %s -> %s", strings.Join(cyc, " -> "), cyc[0])
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, s := range m.Services() {
		if color[s.Ref()] == white {
			visit(s.Ref())
		}
	}
}

// mirrorCollisions refuses plans where the name a mesh gives a mirrored
// service (<svc>-<cluster>, Linkerd's convention) is another service of
// the plan, or is too long for Kubernetes.
func (c *checker) mirrorCollisions(repo *Repository) {
	all := map[string]bool{}
	for _, m := range repo.Migrations {
		for _, s := range m.Services() {
			all[s.Ref()] = true
		}
	}
	for _, m := range repo.Migrations {
		if m.Provider != Linkerd {
			continue
		}
		for wi, w := range m.Waves {
			for si, s := range w.Services {
				p := []string{"migrations", m.Name, "waves", fmt.Sprint(wi), "services", fmt.Sprint(si)}
				for _, cl := range []string{m.From, m.To} {
					mirror := s.Name + "-" + cl
					if all[s.Namespace+"/"+mirror] {
						c.errorf(p, "the mirror of %s from cluster %s is named %s/%s, which is also a service of the plan; rename one of them", s.Ref(), cl, s.Namespace, mirror)
					}
					if len(mirror) > 63 {
						c.errorf(p, "the mirror of %s from cluster %s would be named %s (%d characters); Kubernetes names are at most 63", s.Ref(), cl, mirror, len(mirror))
					}
				}
			}
		}
	}
}
