package admission

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestMeanService(t *testing.T) {
	type obs struct {
		model   string
		service time.Duration
	}
	cases := []struct {
		name  string
		alpha float64
		obs   []obs
		model string
		want  time.Duration
		ok    bool
	}{
		{"unknown model", 0.5, []obs{{"llama", time.Second}}, "qwen", 0, false},
		{"first observation sets the mean", 0.5, []obs{{"llama", 3 * time.Second}}, "llama", 3 * time.Second, true},
		{"EWMA", 0.5, []obs{{"llama", 4 * time.Second}, {"llama", 2 * time.Second}, {"llama", 1 * time.Second}}, "llama", 2 * time.Second, true},
		{"alpha 1 keeps the last", 1, []obs{{"llama", 4 * time.Second}, {"llama", 250 * time.Millisecond}}, "llama", 250 * time.Millisecond, true},
		{"models are separate", 0.5, []obs{{"llama", 4 * time.Second}, {"qwen", 10 * time.Second}, {"llama", 2 * time.Second}}, "llama", 3 * time.Second, true},
		{"invalid alpha means default", 0, []obs{{"llama", 10 * time.Second}, {"llama", 0}}, "llama", 8 * time.Second, true},
		{"NaN alpha means default", math.NaN(), []obs{{"llama", 10 * time.Second}, {"llama", 0}}, "llama", 8 * time.Second, true},
		{"negative service counts as zero", 0.5, []obs{{"llama", 2 * time.Second}, {"llama", -time.Hour}}, "llama", time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMeter(tc.alpha)
			now := t0
			for _, o := range tc.obs {
				now = now.Add(time.Second)
				m.Observe(o.model, o.service, now)
			}
			got, ok := m.MeanService(tc.model)
			if got != tc.want || ok != tc.ok {
				t.Errorf("MeanService(%s) = %v, %v; want %v, %v", tc.model, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestForget(t *testing.T) {
	m := NewMeter(0.5)
	m.Observe("llama", time.Second, t0)
	m.Forget("llama")
	if _, ok := m.MeanService("llama"); ok {
		t.Error("MeanService after Forget")
	}
	if r := m.DrainRate(t0.Add(2 * time.Second)); r <= 0 {
		t.Errorf("DrainRate after Forget = %v, want the completion kept", r)
	}
	m.Observe("llama", 3*time.Second, t0.Add(time.Second))
	if got, _ := m.MeanService("llama"); got != 3*time.Second {
		t.Errorf("MeanService after Forget and Observe = %v, want 3s", got)
	}
}

func TestDrainRate(t *testing.T) {
	// every observes one completion each interval for n intervals from t0.
	every := func(m *Meter, interval time.Duration, n int) time.Time {
		now := t0
		for range n {
			now = now.Add(interval)
			m.Observe("llama", interval, now)
		}
		return now
	}
	near := func(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }
	cases := []struct {
		name string
		run  func(m *Meter) time.Time // returns the last completion time
		idle time.Duration            // then ask this long after it
		want float64                  // tasks/s
		tol  float64                  // relative
	}{
		{"nothing completed", func(*Meter) time.Time { return t0 }, 0, 0, 0},
		{"steady 4/s", func(m *Meter) time.Time { return every(m, 250*time.Millisecond, 2400) }, 0, 4, 0.05},
		{"steady 0.5/s", func(m *Meter) time.Time { return every(m, 2*time.Second, 300) }, 0, 0.5, 0.05},
		{"warm-up: 10/s for 3 s", func(m *Meter) time.Time { return every(m, 100*time.Millisecond, 30) }, 0, 10, 0.15},
		// Read over the one-second minimum span: 1/(30s*(1-e^(-1/30))) ≈ 1.017.
		{"first completion alone", func(m *Meter) time.Time { m.Observe("llama", time.Second, t0); return t0 }, 0, 1.017, 0.001},
		{"burst at one instant reads per second", func(m *Meter) time.Time {
			for range 8 {
				m.Observe("llama", time.Second, t0)
			}
			return t0
		}, 0, 8 * 1.017, 0.001},
		{"idle one window decays by e", func(m *Meter) time.Time { return every(m, 250*time.Millisecond, 2400) }, RateWindow, 4 / math.E, 0.05},
		{"idle ten minutes is nearly 0", func(m *Meter) time.Time { return every(m, 250*time.Millisecond, 2400) }, 10 * time.Minute, 4 * math.Exp(-20), 0.05},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMeter(0.2)
			last := tc.run(m)
			got := m.DrainRate(last.Add(tc.idle))
			if tc.want == 0 && got != 0 || !near(got, tc.want, tc.tol) {
				t.Errorf("DrainRate = %v, want %v ±%v%%", got, tc.want, tc.tol*100)
			}
		})
	}
}

func TestDrainRateClockGoesBack(t *testing.T) {
	m := NewMeter(0.2)
	m.Observe("llama", time.Second, t0.Add(10*time.Second))
	m.Observe("llama", time.Second, t0) // earlier than the last: counts at the last
	// Both completions count at +10 s, read over the one-second minimum span.
	want := 2 / (RateWindow.Seconds() * -math.Expm1(-minRateSpan.Seconds()/RateWindow.Seconds()))
	if got := m.DrainRate(t0.Add(10 * time.Second)); math.Abs(got-want) > 1e-9*want {
		t.Errorf("DrainRate = %v, want %v", got, want)
	}
	if r := m.DrainRate(t0); r <= 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		t.Errorf("DrainRate before the last completion = %v", r)
	}
}

func TestPredictStart(t *testing.T) {
	cases := []struct {
		name             string
		pos, free, total int
		mean             time.Duration
		want             int64
	}{
		{"free slot waits for it", 0, 1, 4, time.Second, 0},
		{"last of the free slots", 2, 3, 4, time.Second, 0},
		{"first to wait, one slot", 0, 0, 1, 2 * time.Second, 2000},
		{"first to wait, four slots", 0, 0, 4, 2 * time.Second, 500},
		{"behind the free slots", 3, 2, 4, 2 * time.Second, 1000},
		{"deep queue", 99, 0, 4, 2 * time.Second, 50_000},
		{"rounds up to a millisecond", 0, 0, 3, time.Second, 334},
		{"no slots", 0, 0, 0, time.Second, -1},
		{"no slots even with free", 0, 2, 0, time.Second, -1},
		{"unknown service time", 1, 0, 4, 0, -1},
		{"unknown service time but free", 0, 1, 4, 0, 0},
		{"negative position is the front", -3, 0, 2, time.Second, 500},
		{"free above total", 5, 9, 4, time.Second, 0},
		{"huge wait saturates", math.MaxInt, 0, 1, time.Duration(math.MaxInt64), math.MaxInt64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PredictStart(tc.pos, tc.free, tc.total, tc.mean); got != tc.want {
				t.Errorf("PredictStart(%d, %d, %d, %v) = %d, want %d", tc.pos, tc.free, tc.total, tc.mean, got, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		name  string
		depth int
		rate  float64
		want  time.Duration
	}{
		{"unknown rate", 100, 0, time.Second},
		{"negative rate", 100, -1, time.Second},
		{"NaN rate", 100, math.NaN(), time.Second},
		{"empty queue", 0, 5, time.Second},
		{"quick drain clamps to 1s", 3, 10, time.Second},
		{"depth over rate", 50, 4, 12500 * time.Millisecond},
		{"rounds up to a millisecond", 1, 0.3, 3334 * time.Millisecond},
		{"slow drain clamps to 60s", 1000, 2, time.Minute},
		{"tiny rate clamps to 60s", 1, 1e-300, time.Minute},
		{"infinite rate", 10, math.Inf(1), time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryAfter(tc.depth, tc.rate); got != tc.want {
				t.Errorf("RetryAfter(%d, %v) = %v, want %v", tc.depth, tc.rate, got, tc.want)
			}
		})
	}
}

func TestDeadlineMet(t *testing.T) {
	cases := []struct {
		name                string
		deadline, predicted int64
		want                bool
	}{
		{"starts now", 100, 0, true},
		{"starts at the deadline", 100, 100, true},
		{"starts after the deadline", 100, 101, false},
		{"unknown prediction", 100, -1, true},
		{"no deadline", 0, 1_000_000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := DeadlineMet(tc.deadline, tc.predicted); got != tc.want {
				t.Errorf("DeadlineMet(%d, %d) = %v, want %v", tc.deadline, tc.predicted, got, tc.want)
			}
		})
	}
}

// TestAdmissionFlow runs the pieces together as the orchestrator does: measure
// completions, predict a queued task's start, check its deadline, and size a
// Retry-After.
func TestAdmissionFlow(t *testing.T) {
	m := NewMeter(0.2)
	now := t0
	// Two workers with two slots each finish a 2 s task every 0.5 s.
	for range 600 {
		now = now.Add(500 * time.Millisecond)
		m.Observe("llama", 2*time.Second, now)
	}
	mean, ok := m.MeanService("llama")
	if !ok || mean != 2*time.Second {
		t.Fatalf("MeanService = %v, %v", mean, ok)
	}
	// Tenth in line with every slot busy: ten releases at 2/s.
	start := PredictStart(9, 0, 4, mean)
	if start != 5000 {
		t.Errorf("PredictStart = %d ms, want 5000", start)
	}
	if DeadlineMet(4000, start) || !DeadlineMet(6000, start) {
		t.Errorf("a 5 s start should miss a 4 s deadline and meet a 6 s one")
	}
	// A 40-deep queue drains in about 20 s at 2/s.
	if got := RetryAfter(40, m.DrainRate(now)); got < 19*time.Second || got > 21*time.Second {
		t.Errorf("RetryAfter = %v, want about 20s", got)
	}
}
