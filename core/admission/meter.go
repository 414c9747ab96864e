package admission

import (
	"math"
	"time"
)

// DefaultAlpha is the service-time smoothing factor NewMeter uses when given
// one outside (0, 1].
const DefaultAlpha = 0.2

// RateWindow is the time constant of the drain rate: a completion's weight
// falls by a factor e every RateWindow, so the rate reflects roughly the last
// RateWindow and decays towards 0 when nothing completes.
const RateWindow = 30 * time.Second

// minRateSpan is the shortest history the drain rate divides by, so that the
// first completions do not suggest an unbounded rate.
const minRateSpan = time.Second

// Meter measures task service times per model and the completion rate across
// models. The zero value is not usable; call NewMeter. A Meter is not safe for
// concurrent use.
type Meter struct {
	alpha  float64
	models map[string]*serviceStat

	// Completions: count decays by e per RateWindow; it was last brought
	// up to date at last. first is the first completion, for warm-up.
	seen        bool
	count       float64
	first, last time.Time
}

type serviceStat struct {
	mean float64 // nanoseconds
}

// NewMeter returns a Meter that smooths service times with weight alpha for
// each new observation (mean = alpha*x + (1-alpha)*mean). An alpha outside
// (0, 1] means DefaultAlpha.
func NewMeter(alpha float64) *Meter {
	if !(alpha > 0 && alpha <= 1) {
		alpha = DefaultAlpha
	}
	return &Meter{alpha: alpha, models: map[string]*serviceStat{}}
}

// Observe records that a task of model finished at now after running for
// service. The first observation of a model sets its mean; a negative service
// counts as zero. A now earlier than the last observation counts as the last.
func (m *Meter) Observe(model string, service time.Duration, now time.Time) {
	x := float64(max(service, 0))
	if s, ok := m.models[model]; ok {
		s.mean += m.alpha * (x - s.mean)
	} else {
		m.models[model] = &serviceStat{mean: x}
	}
	if !m.seen {
		m.seen, m.first, m.last = true, now, now
	}
	m.count = m.decayed(now) + 1
	if now.After(m.last) {
		m.last = now
	}
}

// decayed returns the completion count decayed from last to now.
func (m *Meter) decayed(now time.Time) float64 {
	dt := now.Sub(m.last)
	if dt <= 0 {
		return m.count
	}
	return m.count * math.Exp(-float64(dt)/float64(RateWindow))
}

// MeanService returns the smoothed service time of model, false before its
// first observation.
func (m *Meter) MeanService(model string) (time.Duration, bool) {
	s, ok := m.models[model]
	if !ok {
		return 0, false
	}
	return time.Duration(math.Round(s.mean)), true
}

// Forget drops what the Meter knows about model's service time (the model
// was removed). The drain rate keeps its completions.
func (m *Meter) Forget(model string) { delete(m.models, model) }

// DrainRate returns the recent completion rate in tasks per second, across
// models, 0 before the first completion. It decays towards 0 while nothing
// completes.
//
// The count of completions decays by e every RateWindow, so in steady state it
// holds rate*RateWindow. While the history is shorter than RateWindow, the
// count is divided by the window it could have filled, RateWindow*(1-e^-t/W)
// for t since the first completion (at least one second), so an early burst
// is not read as a slow rate.
func (m *Meter) DrainRate(now time.Time) float64 {
	if !m.seen {
		return 0
	}
	span := max(now.Sub(m.first), minRateSpan)
	w := float64(RateWindow)
	window := w * -math.Expm1(-float64(span)/w) // w*(1-e^(-span/w))
	return m.decayed(now) / (window / float64(time.Second))
}
