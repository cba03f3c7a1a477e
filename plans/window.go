package plans

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// TickGrace is how long after a window tick a promotion may still happen.
// A daemon evaluates gates after the tick fires, and may be restarting or
// busy when it does; a tick older than this is missed rather than caught up
// hours later, when nobody who chose the window expects a change. The next
// tick opens the window again.
const TickGrace = 15 * time.Minute

// searchLimit bounds the iterations of every tick search, so that a
// pathological schedule (every second, behind a year-long freeze) costs
// microseconds and not a hang.
const searchLimit = 100000

// window is a compiled Window: parsed schedules, the location, the denies.
type window struct {
	loc    *time.Location
	scheds []schedule
	denies []deny
	err    error
	// Memos for one decision: every service asks about the same instants.
	deniedMemo map[int64]deniedAt
	nextMemo   map[int64]time.Time
}

type deniedAt struct {
	deny  Deny
	until time.Time
	ok    bool
}

// schedule is one parsed cron expression and the location its wall clock
// is read in (the window's, or the expression's own CRON_TZ=).
type schedule struct {
	sched cron.Schedule
	loc   *time.Location
	// dst is set for expressions at fixed times of day, which ISC cron
	// moves out of a skipped hour and runs once in a repeated one;
	// expressions with * for the hour or minute run by the new clock.
	dst bool
}

type deny struct {
	Deny
	sched *schedule // nil for a date range
}

func compileWindow(w Window) *window {
	c := &window{loc: w.Location, deniedMemo: map[int64]deniedAt{}, nextMemo: map[int64]time.Time{}}
	if c.loc == nil {
		c.loc = time.UTC
	}
	for _, spec := range w.Schedules {
		s, err := c.parse(spec)
		if err != nil {
			c.err = fmt.Errorf("window: schedule %q: %w", spec, err)
			return c
		}
		c.scheds = append(c.scheds, s)
	}
	for _, d := range w.Deny {
		cd := deny{Deny: d}
		if d.Cron != "" {
			s, err := c.parse(d.Cron)
			if err != nil {
				c.err = fmt.Errorf("window: deny %q: %w", d.Cron, err)
				return c
			}
			cd.sched = &s
		}
		c.denies = append(c.denies, cd)
	}
	return c
}

func (c *window) parse(spec string) (schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return schedule{}, err
	}
	loc := c.loc
	if ss, ok := s.(*cron.SpecSchedule); ok {
		// An expression with its own CRON_TZ= is read in that zone.
		// Keep the zone here and give robfig a copy that reads the zone
		// of the time it is given, so that next can also read it on a
		// fixed clock around a DST change.
		if ss.Location != time.Local {
			loc = ss.Location
		}
		cp := *ss
		cp.Location = time.Local
		const star = 1 << 63 // robfig's starBit, set by a plain "*"
		return schedule{sched: &cp, loc: loc, dst: cp.Hour&star == 0 && cp.Minute&star == 0}, nil
	}
	return schedule{sched: s, loc: loc}, nil
}

// sameWallClock reports whether a and b read the same on a clock in loc.
func sameWallClock(a, b time.Time, loc *time.Location) bool {
	a, b = a.In(loc), b.In(loc)
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd && a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Second() == b.Second()
}

// repeated reports whether t's wall clock already happened shortly before,
// in the hour a DST change to winter time repeats.
func repeated(t time.Time, loc *time.Location) bool {
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		if sameWallClock(t.Add(-d), t, loc) {
			return true
		}
	}
	return false
}

// next returns the first tick of s strictly after t, or the zero time.
//
// It follows ISC cron across DST changes, where robfig/cron does not (see
// robfig/cron#541): a tick at a fixed time of day whose wall clock falls in
// the hour skipped in spring happens at the change instead of being
// skipped, and one in the hour repeated in autumn happens once, at its
// first occurrence, instead of twice.
func (s schedule) next(t time.Time) time.Time {
	if !s.dst {
		return s.sched.Next(t.In(s.loc)).In(t.Location())
	}
	var n time.Time
	from := t
	for i := 0; i < searchLimit; i++ {
		n = s.sched.Next(from.In(s.loc))
		if n.IsZero() || !repeated(n, s.loc) {
			break
		}
		from = n
	}
	// A tick in a skipped hour: look at each zone change between t and n.
	cur := t.In(s.loc)
	for i := 0; i < 64; i++ {
		_, end := cur.ZoneBounds()
		if end.IsZero() || (!n.IsZero() && end.After(n)) {
			break
		}
		_, before := cur.Zone()
		_, after := end.Zone()
		if gap := time.Duration(after-before) * time.Second; gap > 0 {
			// Read the schedule on the clock that did not jump: a tick
			// in [end, end+gap) on it has a wall clock that never was.
			fixed := time.FixedZone("", before)
			g := s.sched.Next(end.Add(-time.Nanosecond).In(fixed))
			if !g.IsZero() && g.Before(end.Add(gap)) && end.After(t) {
				return end.In(t.Location())
			}
		}
		cur = end
	}
	if n.IsZero() {
		return n
	}
	return n.In(t.Location())
}

// rawNext returns the first tick of any schedule strictly after t,
// ignoring denies; the zero time if there is none.
func (c *window) rawNext(t time.Time) time.Time {
	var best time.Time
	for _, s := range c.scheds {
		n := s.next(t)
		if !n.IsZero() && (best.IsZero() || n.Before(best)) {
			best = n
		}
	}
	return best
}

// denied returns the deny window that covers t, and when the last one of
// those covering t ends. A deny covers [start, start+duration), the
// duration counted on the wall clock so that "from Friday 22:00 for 58h"
// ends Monday 08:00 local time whatever DST did over the weekend.
func (c *window) denied(t time.Time) (Deny, time.Time, bool) {
	if m, ok := c.deniedMemo[t.UnixNano()]; ok {
		return m.deny, m.until, m.ok
	}
	d, until, ok := c.deniedNow(t)
	c.deniedMemo[t.UnixNano()] = deniedAt{d, until, ok}
	return d, until, ok
}

func (c *window) deniedNow(t time.Time) (Deny, time.Time, bool) {
	var (
		first   Deny
		until   time.Time
		found   bool
		forever bool
	)
	for _, d := range c.denies {
		end, ok := c.covers(d, t)
		if !ok {
			continue
		}
		if !found {
			first, found = d.Deny, true
		}
		if end.IsZero() {
			forever = true
		} else if end.After(until) {
			until = end
		}
	}
	if forever {
		until = time.Time{}
	}
	return first, until, found
}

// covers reports whether d covers t, and when it ends (zero: never).
func (c *window) covers(d deny, t time.Time) (time.Time, bool) {
	if d.sched == nil {
		if d.From.IsZero() && d.To.IsZero() {
			return time.Time{}, false
		}
		if !d.From.IsZero() && t.Before(d.From) || !d.To.IsZero() && !t.Before(d.To) {
			return time.Time{}, false
		}
		return d.To, true
	}
	if d.Duration <= 0 {
		return time.Time{}, false
	}
	// Any start that covers t is after t-duration; leave a slack of three
	// hours for wall-clock durations over a DST change.
	var end time.Time
	start := d.sched.next(t.Add(-d.Duration - 3*time.Hour))
	for i := 0; i < searchLimit && !start.IsZero() && !start.After(t); i++ {
		if e := addWall(start, d.Duration, c.loc); t.Before(e) && e.After(end) {
			end = e
		}
		start = d.sched.next(start)
	}
	return end, !end.IsZero()
}

// addWall adds d to t as a person reading a wall clock in loc would.
func addWall(t time.Time, d time.Duration, loc *time.Location) time.Time {
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond()+int(d), loc).In(t.Location())
}

// nextOpen returns the first tick strictly after t that no deny covers.
func (c *window) nextOpen(t time.Time) time.Time {
	if n, ok := c.nextMemo[t.UnixNano()]; ok {
		return n
	}
	n := c.nextOpenNow(t)
	c.nextMemo[t.UnixNano()] = n
	return n
}

func (c *window) nextOpenNow(t time.Time) time.Time {
	for i := 0; i < searchLimit; i++ {
		n := c.rawNext(t)
		if n.IsZero() {
			return n
		}
		_, until, ok := c.denied(n)
		if !ok {
			return n
		}
		if until.IsZero() {
			return time.Time{} // an open-ended freeze
		}
		// The first tick at or after the freeze ends.
		t = until.Add(-time.Nanosecond)
		if !t.After(n) {
			t = n
		}
	}
	return time.Time{}
}

// open reports whether a promotion may happen at now for a service that
// reached its step at since: now is in no deny window, and a tick no deny
// covered happened after since and at most TickGrace before now. A window
// without schedules is open whenever no deny covers now.
func (c *window) open(now, since time.Time) bool {
	if c.err != nil {
		return false
	}
	if _, _, ok := c.denied(now); ok {
		return false
	}
	if len(c.scheds) == 0 {
		return !now.Before(since)
	}
	from := now.Add(-TickGrace)
	if since.After(from) {
		from = since
	}
	t := c.nextOpen(from)
	return !t.IsZero() && !t.After(now)
}

// earliest returns the first time from t on at which the window is open
// for a service that reached its step at since; zero if none is ahead.
func (c *window) earliest(t, since time.Time) time.Time {
	if c.err != nil {
		return time.Time{}
	}
	for i := 0; i < searchLimit; i++ {
		if t.Before(since) {
			t = since
		}
		if c.open(t, since) {
			return t
		}
		if len(c.scheds) > 0 {
			return c.nextOpen(t)
		}
		_, until, _ := c.denied(t)
		if until.IsZero() {
			return until
		}
		t = until
	}
	return time.Time{}
}

// NextTick returns the first tick of w strictly after now that falls in no
// deny window, in w's location; the zero time if there is none within five
// years, if w has no schedules, or if a schedule does not parse.
func NextTick(now time.Time, w Window) time.Time {
	c := compileWindow(w)
	if c.err != nil {
		return time.Time{}
	}
	t := c.nextOpen(now)
	if t.IsZero() {
		return t
	}
	return t.In(c.loc)
}

// InDeny reports whether now falls in one of w's deny windows, and which.
func InDeny(now time.Time, w Window) (bool, Deny) {
	c := compileWindow(w)
	d, _, ok := c.denied(now)
	return ok, d
}

// DenyUntil returns when the deny windows covering now end (the latest
// end when several overlap); the zero time when none covers now or when a
// date range has no end.
func DenyUntil(now time.Time, w Window) time.Time {
	c := compileWindow(w)
	_, until, _ := c.denied(now)
	if until.IsZero() {
		return until
	}
	return until.In(c.loc)
}

// CheckWindow parses every cron expression of w, the way the engine will.
func CheckWindow(w Window) error { return compileWindow(w).err }
