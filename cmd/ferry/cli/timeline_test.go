package cli

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/plans"
	"github.com/ferry-dev/ferry/reconciler/state"
)

func TestTimeline(t *testing.T) {
	for _, at := range []string{
		"2026-11-23T11:02:00Z", // Monday noon in Copenhagen
		"2026-11-25T01:00:00Z", // before the release train and Black Friday
	} {
		t.Run(at, func(t *testing.T) {
			now, err := time.Parse(time.RFC3339, at)
			if err != nil {
				t.Fatal(err)
			}
			stopClock(t, now)
			testTimeline(t)
		})
	}

	// The freezes the projection waits out are listed with their times.
	stopClock(t, time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC))
	_, out, _ := ferry(t, filepath.Join(t.TempDir(), "state"), "plan", "timeline")
	for _, want := range []string{
		"deny window Black Friday freeze: 2026-11-26 to 2026-12-01",
		`deny window weekly release train: "0 13 * * 3" for 2h0m0s: 2026-11-25 13:00-15:00`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func testTimeline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	code, out, errs := ferry(t, dir, "plan", "timeline", "onprem-to-eks", "--format", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var ts []Timeline
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || len(ts[0].Services) != 15 {
		t.Fatalf("timelines: %+v", ts)
	}
	tl := ts[0]
	if tl.Complete.IsZero() {
		t.Errorf("migration does not complete within %s", tl.Horizon)
	}
	for _, s := range tl.Services {
		if s.Complete.IsZero() {
			t.Errorf("%s: no completion time (%s)", s.Service, s.Blocked)
			continue
		}
		last := tl.At
		for _, st := range s.Reached {
			if st.At.IsZero() || st.At.Before(last) {
				t.Errorf("%s: reaches %d%% at %s, after %s", s.Service, st.Weight, st.At, last)
			}
			last = st.At
		}
		if s.Complete.Before(last) {
			t.Errorf("%s: completes at %s, before reaching 100%% at %s", s.Service, s.Complete, last)
		}
	}

	code, out, errs = ferry(t, dir, "plan", "timeline")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"MIGRATION onprem-to-eks: complete", "5%", "100%", "COMPLETE", "shop/returns", "weekly release train"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestTimelineSVG(t *testing.T) {
	stopClock(t, time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC))
	dir := filepath.Join(t.TempDir(), "state")
	for _, format := range []string{"svg", "html"} {
		t.Run(format, func(t *testing.T) {
			code, out, errs := ferry(t, dir, "plan", "timeline", "--format", format)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			start := strings.Index(out, "<svg")
			end := strings.Index(out, "</svg>")
			if start < 0 || end < 0 {
				t.Fatalf("no svg:\n%s", out)
			}
			dec := xml.NewDecoder(strings.NewReader(out[start : end+len("</svg>")]))
			for {
				if _, err := dec.Token(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("svg is not well-formed: %v", err)
				}
			}
			for _, want := range []string{"shop/inventory", "shop/returns", "deny: Black Friday freeze", "deny: weekly release train", "complete at"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s lacks %q", format, want)
				}
			}
		})
	}
}

func TestTimelineProgress(t *testing.T) {
	now := time.Date(2026, 11, 23, 11, 2, 0, 0, time.UTC)
	stopClock(t, now)
	dir := filepath.Join(t.TempDir(), "state")
	done := plans.NewProgress(now.Add(-2 * time.Hour))
	done.Step, done.Weight, done.State = 5, 100, plans.StateComplete
	half := plans.NewProgress(now.Add(-time.Hour))
	half.Step, half.Weight, half.State = 3, 50, plans.StateProgressing
	st, err := state.NewBolt(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(t.Context(), state.Change{Migration: "onprem-to-eks", At: now,
		Services: map[string]plans.Progress{"shop/inventory": done, "shop/pricing": half}}); err != nil {
		t.Fatal(err)
	}
	_, out, errs := ferry(t, dir, "plan", "timeline", "--format", "json")
	var ts []Timeline
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		t.Fatalf("%v: %s", err, errs)
	}
	got := map[string]TimelineItem{}
	for _, it := range ts[0].Services {
		got[it.Service] = it
	}
	inv := got["shop/inventory"]
	if !inv.Complete.Equal(done.Since) {
		t.Errorf("inventory completes at %s, want when it did: %s", inv.Complete, done.Since)
	}
	for _, s := range inv.Reached {
		if !s.Done {
			t.Errorf("inventory: %d%% not done", s.Weight)
		}
	}
	pr := got["shop/pricing"]
	for _, s := range pr.Reached {
		if want := s.Weight <= 50; s.Done != want || !s.Done && s.At.IsZero() {
			t.Errorf("pricing: %+v, want done %v and a time when not done", s, want)
		}
	}
}
