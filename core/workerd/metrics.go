package workerd

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llorch/llorch/core/api"
)

// metrics are the worker's Prometheus series. Each Server has its own
// registry, so tests may run several workers in one process.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	tokensOut    prometheus.Counter
	promptTokens prometheus.Counter
	cachedTokens prometheus.Counter
	cacheHits    prometheus.Counter
	kvCopies     prometheus.Counter
	ttft         prometheus.Histogram
	decode       prometheus.Histogram
	batchTokens  prometheus.Histogram
	batchSeqs    prometheus.Histogram
	slotsBusy    prometheus.Gauge
	slotsTotal   prometheus.Gauge
	queued       prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_worker_requests_total", Help: "Execute requests by outcome (ok, cancelled, error, invalid, busy, draining).",
		}, []string{"outcome"}),
		tokensOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_worker_tokens_generated_total", Help: "Tokens generated.",
		}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_worker_prompt_tokens_total", Help: "Prompt tokens of finished requests, cached or not.",
		}),
		cachedTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_worker_prompt_tokens_cached_total", Help: "Prompt tokens reused from a slot's KV cache.",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_worker_prompt_cache_hits_total", Help: "Requests that reused a cached prompt prefix.",
		}),
		kvCopies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_worker_prompt_cache_copies_total", Help: "Requests that started from a prefix copied from another slot's KV cache.",
		}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_worker_ttft_seconds", Help: "Time from admission to the first generated token.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		decode: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_worker_decode_seconds", Help: "Time from the first token to the end of a request.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		batchTokens: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_worker_batch_tokens", Help: "Tokens per decode step (continuous batching).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchSeqs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_worker_batch_sequences", Help: "Sequences (slots) per decode step: above 1, streams share the step.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		slotsBusy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llorch_worker_slots_busy", Help: "Slots with a running request.",
		}),
		slotsTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llorch_worker_slots_total", Help: "Slots (parallel sequences).",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llorch_worker_queued_requests", Help: "Requests waiting for a slot (--queue).",
		}),
	}
	m.reg.MustRegister(m.requests, m.tokensOut, m.promptTokens, m.cachedTokens, m.cacheHits, m.kvCopies,
		m.ttft, m.decode, m.batchTokens, m.batchSeqs, m.slotsBusy, m.slotsTotal, m.queued)
	for _, o := range []string{"ok", "cancelled", "error", "invalid", "busy", "draining"} {
		m.requests.WithLabelValues(o)
	}
	return m
}

// outcome is the requests_total label of a failed request's error code.
func outcome(code string) string {
	switch code {
	case api.CodeCancelled:
		return "cancelled"
	case api.CodeDraining:
		return "draining"
	case api.CodeLoading, api.CodeAllSlotsBusy:
		return "busy"
	}
	return "error"
}
