package plans

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("load Europe/Berlin: %v", err)
	}
	return loc
}

// at parses a local time in loc, "2006-01-02 15:04" with an optional
// zone offset suffix to pick one side of a repeated hour.
func at(t testing.TB, loc *time.Location, s string) time.Time {
	t.Helper()
	for _, layout := range []string{"2006-01-02 15:04 -0700", "2006-01-02 15:04:05 -0700", "2006-01-02 15:04", "2006-01-02 15:04:05"} {
		if v, err := time.ParseInLocation(layout, s, loc); err == nil {
			return v
		}
	}
	t.Fatalf("bad time %q", s)
	return time.Time{}
}

func TestNextTick(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		name  string
		w     Window
		now   string
		ticks []string // the next ticks, each after the one before
	}{
		{
			name:  "weekday mornings",
			w:     Window{Schedules: []string{"0 9 * * 1-5"}, Location: loc},
			now:   "2026-11-20 10:00", // a Friday
			ticks: []string{"2026-11-23 09:00 +0100", "2026-11-24 09:00 +0100"},
		},
		{
			name:  "earliest of several schedules",
			w:     Window{Schedules: []string{"0 14 * * *", "30 9 * * *"}, Location: loc},
			now:   "2026-11-20 10:00",
			ticks: []string{"2026-11-20 14:00 +0100", "2026-11-21 09:30 +0100", "2026-11-21 14:00 +0100"},
		},
		{
			name:  "daily tick across the change to summer time keeps the wall clock",
			w:     Window{Schedules: []string{"0 9 * * *"}, Location: loc},
			now:   "2026-03-28 10:00",
			ticks: []string{"2026-03-29 09:00 +0200", "2026-03-30 09:00 +0200"},
		},
		{
			name: "a tick in the skipped hour happens at the change (robfig/cron#541)",
			w:    Window{Schedules: []string{"30 2 * * *"}, Location: loc},
			now:  "2026-03-28 12:00",
			ticks: []string{
				"2026-03-29 03:00 +0200", // 02:30 never was
				"2026-03-30 02:30 +0200",
			},
		},
		{
			name:  "a tick in the repeated hour happens once",
			w:     Window{Schedules: []string{"30 2 * * *"}, Location: loc},
			now:   "2026-10-24 12:00",
			ticks: []string{"2026-10-25 02:30 +0200", "2026-10-26 02:30 +0100"},
		},
		{
			name: "hourly ticks follow the new clock across the change to winter time",
			w:    Window{Schedules: []string{"0 * * * *"}, Location: loc},
			now:  "2026-10-25 01:30 +0200",
			ticks: []string{
				"2026-10-25 02:00 +0200",
				"2026-10-25 02:00 +0100",
				"2026-10-25 03:00 +0100",
			},
		},
		{
			name:  "hourly ticks across the change to summer time",
			w:     Window{Schedules: []string{"0 * * * *"}, Location: loc},
			now:   "2026-03-29 01:30",
			ticks: []string{"2026-03-29 03:00 +0200", "2026-03-29 04:00 +0200"},
		},
		{
			name:  "an expression's own zone wins",
			w:     Window{Schedules: []string{"CRON_TZ=UTC 0 9 * * *"}, Location: loc},
			now:   "2026-11-20 12:00",
			ticks: []string{"2026-11-21 10:00 +0100"},
		},
		{
			name: "ticks inside a deny window are skipped",
			w: Window{Schedules: []string{"0 9 * * *"}, Location: loc, Deny: []Deny{
				{Reason: "black friday", From: at(t, loc, "2026-11-27 00:00"), To: at(t, loc, "2026-11-30 00:00")},
			}},
			now:   "2026-11-26 10:00",
			ticks: []string{"2026-11-30 09:00 +0100", "2026-12-01 09:00 +0100"},
		},
		{
			name: "a tick at the end of a freeze is open",
			w: Window{Schedules: []string{"0 * * * *"}, Location: loc, Deny: []Deny{
				{Reason: "nightly backup", Cron: "0 1 * * *", Duration: 2 * time.Hour},
			}},
			now:   "2026-11-20 00:30",
			ticks: []string{"2026-11-20 03:00 +0100", "2026-11-20 04:00 +0100"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(t, loc, tt.now)
			var got, want []string
			for _, w := range tt.ticks {
				want = append(want, at(t, loc, w).Format(time.RFC3339))
				next := NextTick(now, tt.w)
				got = append(got, next.Format(time.RFC3339))
				now = next
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ticks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNextTickNone(t *testing.T) {
	loc := berlin(t)
	now := at(t, loc, "2026-11-20 10:00")
	for name, w := range map[string]Window{
		"no schedules":   {Location: loc},
		"bad expression": {Schedules: []string{"0 25 * * *"}, Location: loc},
		"frozen forever": {Schedules: []string{"0 9 * * *"}, Location: loc, Deny: []Deny{{From: now}}},
		"february 30":    {Schedules: []string{"0 9 30 2 *"}, Location: loc},
	} {
		if got := NextTick(now, w); !got.IsZero() {
			t.Errorf("%s: NextTick = %v, want zero", name, got)
		}
	}
	if err := CheckWindow(Window{Schedules: []string{"0 25 * * *"}}); err == nil {
		t.Error("CheckWindow accepted hour 25")
	}
	if got := NextTick(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), Window{Schedules: []string{"0 9 * * *"}}); got.Location() != time.UTC || got.Hour() != 9 {
		t.Errorf("a window without location runs in UTC: got %v", got)
	}
}

func TestInDeny(t *testing.T) {
	loc := berlin(t)
	weekend := Deny{Reason: "weekend", Cron: "0 22 * * 5", Duration: 58 * time.Hour}
	xmas := Deny{Reason: "christmas", From: at(t, loc, "2026-12-20 00:00"), To: at(t, loc, "2027-01-04 00:00")}
	w := Window{Schedules: []string{"0 9 * * *"}, Location: loc, Deny: []Deny{weekend, xmas}}
	tests := []struct {
		now   string
		want  string // reason of the covering deny, "" for none
		until string
	}{
		{now: "2026-11-20 21:59", want: ""},
		{now: "2026-11-20 22:00", want: "weekend", until: "2026-11-23 08:00 +0100"},
		{now: "2026-11-22 23:59", want: "weekend", until: "2026-11-23 08:00 +0100"},
		{now: "2026-11-23 08:00", want: ""},
		// 58 hours on the wall clock: the weekend of the change to winter
		// time has 59 real hours, the one to summer time 57.
		{now: "2026-10-26 07:30 +0100", want: "weekend", until: "2026-10-26 08:00 +0100"},
		{now: "2026-10-26 08:00 +0100", want: ""},
		{now: "2026-03-30 07:59 +0200", want: "weekend", until: "2026-03-30 08:00 +0200"},
		{now: "2026-03-30 08:00 +0200", want: ""},
		{now: "2026-12-17 23:59", want: ""},
		{now: "2026-12-24 12:00", want: "christmas", until: "2027-01-04 00:00 +0100"},
		// Overlapping freezes: the later end counts.
		{now: "2026-12-25 23:00", want: "weekend", until: "2027-01-04 00:00 +0100"},
		{now: "2027-01-04 00:00", want: "weekend", until: "2027-01-04 08:00 +0100"},
		{now: "2027-01-04 08:00", want: ""},
	}
	for _, tt := range tests {
		now := at(t, loc, tt.now)
		got, d := InDeny(now, w)
		if got != (tt.want != "") || got && d.Reason != tt.want {
			t.Errorf("InDeny(%s) = %v %q, want %q", tt.now, got, d.Reason, tt.want)
		}
		var until string
		if u := DenyUntil(now, w); !u.IsZero() {
			until = u.Format(time.RFC3339)
		}
		var want string
		if tt.until != "" {
			want = at(t, loc, tt.until).Format(time.RFC3339)
		}
		if until != want {
			t.Errorf("DenyUntil(%s) = %s, want %s", tt.now, until, want)
		}
	}
}

func TestWindowOpen(t *testing.T) {
	loc := berlin(t)
	w := compileWindow(Window{Schedules: []string{"0 9 * * *"}, Location: loc, Deny: []Deny{
		{Reason: "release freeze", From: at(t, loc, "2026-11-25 00:00"), To: at(t, loc, "2026-11-25 09:05")},
	}})
	tests := []struct {
		name       string
		now, since string
		want       bool
	}{
		{"at the tick", "2026-11-24 09:00", "2026-11-23 12:00", true},
		{"within the grace", "2026-11-24 09:14", "2026-11-23 12:00", true},
		{"after the grace", "2026-11-24 09:16", "2026-11-23 12:00", false},
		{"before the tick", "2026-11-24 08:59", "2026-11-23 12:00", false},
		{"one step per tick", "2026-11-24 09:10", "2026-11-24 09:02", false},
		{"a tick inside a freeze opens nothing", "2026-11-25 09:06", "2026-11-23 12:00", false},
		{"missed days are not caught up", "2026-11-24 08:00", "2026-11-20 12:00", false},
	}
	for _, tt := range tests {
		if got := w.open(at(t, loc, tt.now), at(t, loc, tt.since)); got != tt.want {
			t.Errorf("%s: open = %v, want %v", tt.name, got, tt.want)
		}
	}
}
