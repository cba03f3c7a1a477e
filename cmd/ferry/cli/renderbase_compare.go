package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/renderer"
)

// comparison is what a change of the plans does, for a reviewer.
type comparison struct {
	Base, Head string // labels of the two sides
	Assumed    string // the progress both sides were rendered at, in words
	Notes      []string
	Changes    []planChange
	Clusters   []clusterDiff
}

// planChange is one difference between the plans at base and at head.
type planChange struct {
	Kind    string // "service added", "weight", "gate removed", ...
	Subject string // migration, migration/wave or migration/namespace/name
	Base    string // "" when absent at base
	Head    string // "" when absent at head
	// Risk says why a reviewer should look twice; empty when the change
	// is routine.
	Risk string
}

// clusterDiff is how one cluster's built manifests change.
type clusterDiff struct {
	Cluster string
	// Diff is the unified diff of the cluster's manifests.yaml; "" when
	// they are equal.
	Diff                   string
	Added, Changed, Pruned []string // object IDs
	// Unowned are the pruned objects ferry does not own (partial Services):
	// only ferry's labels and annotations are removed from them.
	Unowned []string
}

func (c *comparison) prunes() int {
	n := 0
	for _, d := range c.Clusters {
		n += len(d.Pruned)
	}
	return n
}

func (c *comparison) rollbacks() int {
	n := 0
	for _, ch := range c.Changes {
		if ch.Kind == kindRollback {
			n++
		}
	}
	return n
}

// risks returns the changes a reviewer must look at twice.
func (c *comparison) risks() []planChange {
	var out []planChange
	for _, ch := range c.Changes {
		if ch.Risk != "" {
			out = append(out, ch)
		}
	}
	return out
}

// Kinds of change that policy flags and tests refer to.
const (
	kindRollback = "rollback"
	kindPaused   = "paused"
)

// compare compares the render and the plans of base and head; now is where
// the timeline projections start.
func compare(now time.Time, base, head *side) (*comparison, error) {
	c := &comparison{Base: base.label, Head: head.label}
	diffs, err := diffClusters(base.res, head.res)
	if err != nil {
		return nil, err
	}
	c.Clusters = diffs
	c.Changes = planChanges(now, base, head)
	return c, nil
}

// diffClusters diffs the built manifests of every cluster of either side.
func diffClusters(base, head *renderer.Result) ([]clusterDiff, error) {
	var names []string
	for _, r := range []*renderer.Result{base, head} {
		for _, c := range r.Clusters {
			if !slices.Contains(names, c.Name) {
				names = append(names, c.Name)
			}
		}
	}
	slices.Sort(names)
	var out []clusterDiff
	for _, name := range names {
		b, h := base.Cluster(name), head.Cluster(name)
		d := clusterDiff{Cluster: name}
		var bm, hm []byte
		from, to := "/dev/null", "/dev/null"
		before := map[string]renderer.Object{}
		if b != nil {
			bm, from = b.Manifests, "base/"+name+"/manifests.yaml"
			for _, o := range b.Objects {
				before[objectID(o)] = o
			}
		}
		if h != nil {
			hm, to = h.Manifests, "head/"+name+"/manifests.yaml"
			for _, o := range h.Objects {
				id := objectID(o)
				old, ok := before[id]
				switch {
				case !ok:
					d.Added = append(d.Added, id)
				case string(old.YAML) != string(o.YAML):
					d.Changed = append(d.Changed, id)
				}
				delete(before, id)
			}
		}
		if b != nil {
			// In manifest order, so the list reads like the diff.
			for _, o := range b.Objects {
				id := objectID(o)
				if _, gone := before[id]; !gone {
					continue
				}
				if o.Partial {
					d.Unowned = append(d.Unowned, id)
				} else {
					d.Pruned = append(d.Pruned, id)
				}
			}
		}
		if string(bm) != string(hm) {
			text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: lines(bm), B: lines(hm), FromFile: from, ToFile: to, Context: 3,
			})
			if err != nil {
				return nil, fmt.Errorf("cluster %s: diff: %w", name, err)
			}
			d.Diff = text
		}
		out = append(out, d)
	}
	return out, nil
}

// objectID names an object the way kubectl does: Kind.group namespace/name.
func objectID(o renderer.Object) string {
	kind := o.Kind
	if group, _, ok := strings.Cut(o.APIVersion, "/"); ok {
		kind += "." + group
	}
	if o.Namespace == "" {
		return kind + " " + o.Name
	}
	return kind + " " + o.Namespace + "/" + o.Name
}

// planChanges lists what changed in the plans themselves, migration by
// migration, in the order of the head's plans.
func planChanges(now time.Time, base, head *side) []planChange {
	var out []planChange
	for _, hm := range migrationsOf(head) {
		bm := base.migration(hm.Name)
		if bm == nil {
			out = append(out, planChange{Kind: "migration added", Subject: hm.Name,
				Head: fmt.Sprintf("%s → %s, %s, %d services", hm.From, hm.To, hm.Provider, len(hm.Services()))})
			out = append(out, completion(now, nil, hm, nil, head.progress[hm.Name])...)
			continue
		}
		out = append(out, migrationChanges(now, bm, hm, base.progress[bm.Name], head.progress[hm.Name])...)
	}
	for _, bm := range migrationsOf(base) {
		if head.migration(bm.Name) == nil {
			out = append(out, planChange{Kind: "migration removed", Subject: bm.Name,
				Base: fmt.Sprintf("%s → %s, %s, %d services", bm.From, bm.To, bm.Provider, len(bm.Services())),
				Risk: "every service of the migration goes back to 0% and loses its objects"})
		}
	}
	return out
}

func migrationsOf(s *side) []*plans.Migration {
	if s.repo == nil {
		return nil
	}
	return s.repo.Migrations
}

func (s *side) migration(name string) *plans.Migration {
	if s.repo == nil {
		return nil
	}
	return s.repo.Migration(name)
}

// migrationChanges compares one migration present on both sides.
func migrationChanges(now time.Time, bm, hm *plans.Migration, bp, hp map[string]plans.Progress) []planChange {
	var out []planChange
	add := func(kind, subject, b, h, risk string) {
		if b != h {
			out = append(out, planChange{Kind: kind, Subject: subject, Base: b, Head: h, Risk: risk})
		}
	}
	name := hm.Name
	add("route", name, fmt.Sprintf("%s → %s, %s", bm.From, bm.To, bm.Provider), fmt.Sprintf("%s → %s, %s", hm.From, hm.To, hm.Provider), "")
	out = append(out, serviceChanges(bm, hm, bp, hp)...)
	out = append(out, stepChanges(bm, hm, bp, hp)...)
	add("soak", name, bm.Soak.String(), hm.Soak.String(), "")
	add("window schedule", name, strings.Join(bm.Window.Schedules, ", "), strings.Join(hm.Window.Schedules, ", "), "")
	add("window timezone", name, bm.Window.Timezone, hm.Window.Timezone, "")
	out = append(out, setChanges("deny window", name, denyWords(bm.Window), denyWords(hm.Window), "")...)
	out = append(out, setChanges("gate", name, gateWords(bm), gateWords(hm), "the promotions it guarded no longer wait for it")...)
	add("on failure", name, string(bm.OnFailure), string(hm.OnFailure), "")
	add("max concurrent", name, strconv.Itoa(bm.MaxConcurrent), strconv.Itoa(hm.MaxConcurrent), "")
	out = append(out, setChanges("approval", name, approvalWords(bm), approvalWords(hm), "")...)
	out = append(out, flagChanges(bm, hm)...)
	out = append(out, completion(now, bm, hm, bp, hp)...)
	return out
}

// serviceChanges lists services added, removed, moved between waves, and
// rendered at a different weight.
func serviceChanges(bm, hm *plans.Migration, bp, hp map[string]plans.Progress) []planChange {
	var out []planChange
	for _, hs := range hm.Services() {
		subject := hm.Name + "/" + hs.Ref()
		bs := bm.Service(hs.Ref())
		if bs == nil {
			out = append(out, planChange{Kind: "service added", Subject: subject, Head: "wave " + hs.Wave})
			continue
		}
		if bs.Wave != hs.Wave {
			out = append(out, planChange{Kind: "wave", Subject: subject, Base: bs.Wave, Head: hs.Wave})
		}
		bw, hw := bp[hs.Ref()].Weight, hp[hs.Ref()].Weight
		if bw != hw {
			ch := planChange{Kind: "weight", Subject: subject, Base: fmt.Sprintf("%d%%", bw), Head: fmt.Sprintf("%d%%", hw)}
			if n := stepsBetween(hm, bw, hw); n > 1 {
				ch.Risk = fmt.Sprintf("moves %d steps at once", n)
			}
			out = append(out, ch)
		}
	}
	for _, bs := range bm.Services() {
		if hm.Service(bs.Ref()) == nil {
			out = append(out, planChange{Kind: "service removed", Subject: bm.Name + "/" + bs.Ref(), Base: "wave " + bs.Wave,
				Risk: "goes back to 0%, then its objects are pruned"})
		}
	}
	return out
}

// stepsBetween counts the steps of m passed going from weight a to b.
func stepsBetween(m *plans.Migration, a, b int) int {
	lo, hi := min(a, b), max(a, b)
	n := 0
	for _, s := range m.Steps {
		if s.Mirror == 0 && s.Weight > lo && s.Weight <= hi {
			n++
		}
	}
	return n
}

// stepChanges reports an edited step list, risky when a service's next
// move becomes larger than it was.
func stepChanges(bm, hm *plans.Migration, bp, hp map[string]plans.Progress) []planChange {
	b, h := stepWords(bm), stepWords(hm)
	if b == h {
		return nil
	}
	ch := planChange{Kind: "steps", Subject: hm.Name, Base: b, Head: h}
	var bigger []string
	jump := 0
	for _, s := range hm.Services() {
		if bm.Service(s.Ref()) == nil {
			continue
		}
		was, now := nextJump(bm, bp[s.Ref()].Weight), nextJump(hm, hp[s.Ref()].Weight)
		if now > was {
			bigger = append(bigger, s.Ref())
			jump = max(jump, now)
		}
	}
	if len(bigger) > 0 {
		ch.Risk = fmt.Sprintf("the next move grows to +%d%% for %s", jump, listWords(bigger, 3))
	} else if b, h := largestJump(bm), largestJump(hm); h > b {
		ch.Risk = fmt.Sprintf("the largest move grows from +%d%% to +%d%%", b, h)
	}
	return []planChange{ch}
}

func stepWords(m *plans.Migration) string {
	var ws []string
	for _, s := range m.Steps {
		ws = append(ws, s.String())
	}
	return strings.Join(ws, ", ")
}

// nextJump is how much weight the next promotion from weight w adds.
func nextJump(m *plans.Migration, w int) int {
	for _, s := range m.Steps {
		if s.Mirror == 0 && s.Weight > w {
			return s.Weight - w
		}
	}
	return 0
}

func largestJump(m *plans.Migration) int {
	j, prev := 0, 0
	for _, s := range m.Steps {
		if s.Mirror == 0 {
			j, prev = max(j, s.Weight-prev), s.Weight
		}
	}
	return j
}

// listWords lists up to n items and says how many more there are.
func listWords(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// setChanges compares two keyed sets of descriptions: what was added,
// removed (with risk removed) or changed.
func setChanges(kind, subject string, b, h map[string]string, removed string) []planChange {
	var out []planChange
	keys := slices.Sorted(maps.Keys(h))
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := h[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		bv, inB := b[k]
		hv, inH := h[k]
		switch {
		case !inB:
			out = append(out, planChange{Kind: kind + " added", Subject: subject + "/" + k, Head: hv})
		case !inH:
			out = append(out, planChange{Kind: kind + " removed", Subject: subject + "/" + k, Base: bv, Risk: removed})
		case bv != hv:
			out = append(out, planChange{Kind: kind + " changed", Subject: subject + "/" + k, Base: bv, Head: hv})
		}
	}
	return out
}

// denyWords keys deny windows by reason (or position when unnamed), with
// dates read in the window's time zone as the plan writes them.
func denyWords(w plans.Window) map[string]string {
	loc := w.Location
	if loc == nil {
		loc = time.UTC
	}
	out := map[string]string{}
	for i, d := range w.Deny {
		key := d.Reason
		if key == "" {
			key = "#" + strconv.Itoa(i+1)
		}
		if d.Cron != "" {
			out[key] = fmt.Sprintf("%q for %s", d.Cron, d.Duration)
			continue
		}
		to := "open end"
		if !d.To.IsZero() {
			to = d.To.In(loc).Format(time.DateOnly)
		}
		out[key] = d.From.In(loc).Format(time.DateOnly) + " to " + to
	}
	return out
}

// gateWords keys the migration's gates by name and its waves' by
// wave/name.
func gateWords(m *plans.Migration) map[string]string {
	out := map[string]string{}
	for _, g := range m.Gates {
		out[g.Name] = gateWord(g)
	}
	for _, w := range m.Waves {
		for _, g := range w.Gates {
			out[w.Name+"/"+g.Name] = gateWord(g)
		}
	}
	return out
}

func gateWord(g plans.Gate) string {
	var s string
	switch {
	case g.Prometheus != nil:
		p := g.Prometheus
		if p.Baseline != 0 {
			s = fmt.Sprintf("prometheus %s %g × baseline", p.Op, p.Baseline)
		} else {
			s = fmt.Sprintf("prometheus %s %g", p.Op, p.Threshold)
		}
		s += ": " + p.Query
	case g.Webhook != nil:
		s = "webhook " + g.Webhook.URL
	case g.Kind == plans.GateSoak:
		s = "soak " + g.Soak.String()
	default:
		s = string(g.Kind)
	}
	if len(g.Steps) > 0 {
		var ws []string
		for _, w := range g.Steps {
			ws = append(ws, strconv.Itoa(w))
		}
		s += " (steps " + strings.Join(ws, ", ") + ")"
	}
	return s
}

// approvalWords keys the approvals recorded in Git by what they approve.
func approvalWords(m *plans.Migration) map[string]string {
	out := map[string]string{}
	for _, a := range m.Approvals {
		key := a.Wave
		if a.Service != "" {
			key += "/" + a.Service
		}
		if a.Step != 0 {
			key += fmt.Sprintf(" to %d%%", a.Step)
		}
		out[key] = "by " + a.By
	}
	return out
}

// flagChanges reports rollback and paused set or lifted in Git on the
// migration, its waves and its services.
func flagChanges(bm, hm *plans.Migration) []planChange {
	var out []planChange
	flag := func(kind, subject string, b, h bool, risk string) {
		switch {
		case h && !b:
			out = append(out, planChange{Kind: kind, Subject: subject, Base: "false", Head: "true", Risk: risk})
		case b && !h:
			out = append(out, planChange{Kind: kind + " lifted", Subject: subject, Base: "true", Head: "false"})
		}
	}
	flag(kindRollback, hm.Name, bm.Rollback, hm.Rollback, "sends every service of the migration back to 0%")
	flag(kindPaused, hm.Name, bm.Paused, hm.Paused, "freezes every service of the migration where it is")
	for _, hw := range hm.Waves {
		bw := bm.Wave(hw.Name)
		if bw == nil {
			continue
		}
		flag(kindRollback, hm.Name+"/"+hw.Name, bw.Rollback, hw.Rollback, "sends every service of the wave back to 0%")
		flag(kindPaused, hm.Name+"/"+hw.Name, bw.Paused, hw.Paused, "freezes every service of the wave where it is")
	}
	for _, hs := range hm.Services() {
		bs := bm.Service(hs.Ref())
		if bs == nil {
			continue
		}
		flag(kindRollback, hm.Name+"/"+hs.Ref(), bs.Rollback, hs.Rollback, "sends the service back to 0%")
	}
	return out
}

// projectionHorizon is how far the compared timelines look ahead.
const projectionHorizon = 365 * 24 * time.Hour

// completion reports when the migration and each of its waves would
// complete at base and at head, assuming every gate passes, when that
// moves: a changed window, soak or step list shows up as a later or
// earlier date. bm is nil for a new migration.
func completion(now time.Time, bm, hm *plans.Migration, bp, hp map[string]plans.Progress) []planChange {
	hs := waveCompletion(now, hm, hp)
	bs := map[string]string{}
	if bm != nil {
		bs = waveCompletion(now, bm, bp)
	}
	var out []planChange
	for _, k := range append([]string{""}, waveNames(hm)...) {
		if bs[k] == hs[k] {
			continue
		}
		subject := hm.Name
		if k != "" {
			subject += "/" + k
		}
		out = append(out, planChange{Kind: "completes", Subject: subject, Base: bs[k], Head: hs[k]})
	}
	return out
}

// waveCompletion projects when the migration ("" key) and each wave would
// complete, in the migration's time zone.
func waveCompletion(now time.Time, m *plans.Migration, progress map[string]plans.Progress) map[string]string {
	t := timeline(now, m, progress, projectionHorizon)
	word := func(at time.Time) string {
		if at.IsZero() {
			return "not within a year"
		}
		return at.In(t.Location).Format("2006-01-02 15:04 MST")
	}
	out := map[string]string{"": word(t.Complete)}
	waves := map[string]time.Time{}
	open := map[string]bool{}
	for _, it := range t.Services {
		if it.Complete.IsZero() {
			open[it.Wave] = true
		} else if it.Complete.After(waves[it.Wave]) {
			waves[it.Wave] = it.Complete
		}
	}
	for _, w := range m.Waves {
		if open[w.Name] {
			out[w.Name] = word(time.Time{})
		} else if len(w.Services) > 0 {
			out[w.Name] = word(waves[w.Name])
		}
	}
	return out
}
