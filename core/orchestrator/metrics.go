package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the orchestrator's Prometheus series. No series is labelled by
// task id: labels are bounded sets (outcomes, priorities, models, states).
type metrics struct {
	reg        *prometheus.Registry
	tasks      *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
	ttft       prometheus.Histogram
	tokensOut  prometheus.Counter
	workers    *prometheus.GaugeVec
	schedule   prometheus.Histogram
	rejections *prometheus.CounterVec

	routingCalls   *prometheus.CounterVec
	routingSeconds *prometheus.HistogramVec
	routingReloads *prometheus.CounterVec

	attemptsFailed *prometheus.CounterVec
	resumes        *prometheus.CounterVec
	migrations     *prometheus.CounterVec
	journalErrors  *prometheus.CounterVec
	traceDropped   prometheus.Counter
	traceErrors    prometheus.Counter

	prefixHitTokens       prometheus.Counter
	prefixPredictedTokens prometheus.Counter
	prefixPromptTokens    prometheus.Counter
	prefixPredictions     *prometheus.CounterVec
	prefixBlocks          prometheus.Gauge
	prefixSequences       prometheus.Gauge

	fleetEvents    *prometheus.CounterVec
	fleetReplicas  *prometheus.GaugeVec
	fleetColdStart prometheus.Histogram
	poolUp         *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_tasks_total", Help: "Finished tasks by outcome (succeeded, failed, cancelled, dropped) and priority.",
		}, []string{"outcome", "priority"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llorch_queue_depth", Help: "Tasks waiting in the queue.",
		}, []string{"model", "priority"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_ttft_seconds", Help: "Time from admission to the first token relayed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		tokensOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_tokens_out_total", Help: "Tokens relayed to clients.",
		}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llorch_workers", Help: "Registered workers by state.",
		}, []string{"state"}),
		schedule: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_schedule_seconds", Help: "Time to place one task (dispatch pass divided by tasks placed).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_rejections_total", Help: "Requests refused at admission, by reason (error code).",
		}, []string{"reason"}),
		routingCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_routing_calls_total", Help: "Routing script calls by stage (admit, place) and outcome (ok, default, error, timeout, alloc_cap, invalid).",
		}, []string{"stage", "outcome"}),
		routingSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "llorch_routing_seconds", Help: "Time of one routing script call.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 3, 10),
		}, []string{"stage"}),
		routingReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_routing_reloads_total", Help: "Routing script loads by result (ok, error).",
		}, []string{"result"}),
		attemptsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_attempts_failed_total", Help: "Attempts that ended without a terminal event, by reason (busy, worker_error, worker_lost, idle, bad_stream).",
		}, []string{"reason"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_resumes_total", Help: "Tasks continued from the tokens already sent, by cause (restart: after an orchestrator restart; migration: after a worker was lost).",
		}, []string{"cause"}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_migrations_total", Help: "Tasks moved to another worker mid-stream, by reason (died, hung, drain, error, removed).",
		}, []string{"reason"}),
		prefixHitTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_prefix_cache_hit_tokens_total", Help: "Prompt tokens workers reported reused from their KV cache (cached_tokens of started events).",
		}),
		prefixPredictedTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_prefix_cache_predicted_tokens_total", Help: "Prompt tokens the prefix index expected the chosen worker to hold.",
		}),
		prefixPromptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_prefix_cache_prompt_tokens_total", Help: "Prompt tokens of started tasks (the hit ratio's denominator).",
		}),
		prefixPredictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_prefix_cache_predictions_total", Help: "Prefix predictions checked against the worker's report, by outcome (confirmed: the hit predicted was there; short: less was there, the index was corrected; unexpected: a hit nobody predicted; none: no hit predicted or seen).",
		}, []string{"outcome"}),
		prefixBlocks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llorch_prefix_index_blocks", Help: "Prefix blocks the index believes workers hold (summed over workers).",
		}),
		prefixSequences: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llorch_prefix_index_sequences", Help: "Cached sequences (one per worker slot at most) the prefix index tracks.",
		}),
		journalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_journal_errors_total", Help: "Failed writes of the task journal, by part (batch: bbolt, tail: the tail log).",
		}, []string{"part"}),
		traceDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_trace_records_dropped_total", Help: "Trace records (--trace-file) dropped because the writer fell behind.",
		}),
		traceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llorch_trace_write_errors_total", Help: "Failed writes of the trace file (--trace-file); the records are lost.",
		}),
		fleetEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_fleet_events_total", Help: "Fleet actions by kind (spawn, ready, crash, restart, stop, download, install, unplaceable, …).",
		}, []string{"kind"}),
		fleetReplicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llorch_fleet_replicas", Help: "Replicas of declared models by phase (desired, starting, ready).",
		}, []string{"model", "phase"}),
		fleetColdStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "llorch_fleet_cold_start_seconds", Help: "Time from a start's placement to its worker's registration (download and load included).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		poolUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "llorch_pool_up", Help: "1 when the pool's last refresh succeeded, else 0.",
		}, []string{"pool"}),
	}
	m.reg.MustRegister(m.tasks, m.queueDepth, m.ttft, m.tokensOut, m.workers, m.schedule, m.rejections,
		m.routingCalls, m.routingSeconds, m.routingReloads, m.attemptsFailed, m.resumes, m.migrations, m.journalErrors, m.traceDropped, m.traceErrors,
		m.prefixHitTokens, m.prefixPredictedTokens, m.prefixPromptTokens, m.prefixPredictions, m.prefixBlocks, m.prefixSequences,
		m.fleetEvents, m.fleetReplicas, m.fleetColdStart, m.poolUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
