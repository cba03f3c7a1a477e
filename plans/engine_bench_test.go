package plans

import (
	"fmt"
	"testing"
	"time"
)

// big returns a migration of n services in waves of 100, with a freeze.
func big(loc *time.Location, n int) (*Migration, map[string]Progress, time.Time) {
	m := shop(loc)
	m.Window.Deny = []Deny{{Reason: "weekend", Cron: "0 0 * * 6", Duration: 48 * time.Hour}}
	m.Waves = nil
	since := time.Date(2026, 11, 23, 9, 0, 0, 0, loc)
	progress := map[string]Progress{}
	for i := 0; i < n; i++ {
		if i%100 == 0 {
			m.Waves = append(m.Waves, &Wave{Name: fmt.Sprintf("wave-%d", i/100)})
		}
		w := m.Waves[len(m.Waves)-1]
		s := &Service{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Wave: w.Name}
		w.Services = append(w.Services, s)
		if i < 100 {
			progress[s.Ref()] = stepAt(i%4, m.Steps[i%4].Weight, since)
		}
	}
	return m, progress, time.Date(2026, 11, 24, 9, 0, 30, 0, loc)
}

func BenchmarkDecide2000(b *testing.B) {
	m, progress, now := big(berlin(b), 2000)
	obs := passing(m, now)
	b.ResetTimer()
	for b.Loop() {
		Decide(now, m, progress, obs)
	}
}

func BenchmarkProject2000(b *testing.B) {
	m, progress, now := big(berlin(b), 2000)
	b.ResetTimer()
	for b.Loop() {
		Project(now, m, progress, 365*24*time.Hour)
	}
}
