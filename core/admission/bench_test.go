package admission

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkObserve records a completion for one of eight models, as the
// orchestrator does when a task ends.
func BenchmarkObserve(b *testing.B) {
	models := make([]string, 8)
	for i := range models {
		models[i] = "model-" + strconv.Itoa(i)
	}
	m := NewMeter(0.2)
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		m.Observe(models[i%len(models)], time.Second, now)
	}
}

// BenchmarkAdmit is the per-request prediction path: mean service time, start
// prediction, deadline check and a Retry-After from the drain rate.
func BenchmarkAdmit(b *testing.B) {
	m := NewMeter(0.2)
	now := t0
	for range 1000 {
		now = now.Add(100 * time.Millisecond)
		m.Observe("llama", 2*time.Second, now)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		mean, _ := m.MeanService("llama")
		start := PredictStart(i%64, 2, 16, mean)
		if !DeadlineMet(1<<40, start) {
			b.Fatal("deadline")
		}
		if RetryAfter(i%256, m.DrainRate(now)) <= 0 {
			b.Fatal("retry")
		}
	}
}
