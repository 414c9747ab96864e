package api

import (
	"encoding/json"
	"math"
	"strconv"
)

// The orchestrator's sample ring: every interval (one second by default) it
// takes one StatsSample of the fleet and keeps the last 15 minutes of them
// in memory. GET /v2/stats answers with a window of the ring as columns
// (Stats: one array per figure, one value per sample, ready for a chart);
// GET /v2/stats/stream sends each new sample as an SSE event ("sample") as
// soon as it is taken. The dashboard (/ui) draws from both.

// Limits of the stats API.
const (
	// StatsSpanMs is how far back the ring reaches (15 minutes): the longest
	// window GET /v2/stats serves.
	StatsSpanMs = 15 * 60 * 1000
	// MaxStatsWorkers is the most per-worker series one answer carries
	// (the workers query parameter); DefaultStatsWorkers when not given.
	MaxStatsWorkers     = 1000
	DefaultStatsWorkers = 10
)

// StatsSample is the fleet over one sample interval, ending at T. Counts of
// things that happened (tokens, outcomes, first tokens) are over the
// interval; gauges (queue, running) are read at T.
type StatsSample struct {
	// T is the end of the interval, Unix milliseconds.
	T int64 `json:"t"`
	// TokensPerSecond is the tokens relayed to clients over the interval,
	// divided by its length: the whole fleet.
	TokensPerSecond float64 `json:"tokens_per_second"`
	// QueuedInteractive and QueuedBatch are the queue's depth by priority,
	// Running the tasks on a worker now.
	QueuedInteractive int `json:"queued_interactive"`
	QueuedBatch       int `json:"queued_batch"`
	Running           int `json:"running"`
	// TTFTP50Ms and TTFTP95Ms are percentiles of the time to first token
	// (admission to the first token relayed) of the tasks whose first token
	// came in the interval; nil (null) when none did.
	TTFTP50Ms *float64 `json:"ttft_p50_ms"`
	TTFTP95Ms *float64 `json:"ttft_p95_ms"`
	// Requests ended in the interval, by outcome: OK (succeeded), Rejected
	// (refused at admission: llorch_rejections_total), Cancelled, Failed.
	OK        int `json:"ok"`
	Rejected  int `json:"rejected"`
	Cancelled int `json:"cancelled"`
	Failed    int `json:"failed"`
	// Workers is the tokens per second relayed from each worker over the
	// interval, by worker id: the workers that relayed any, the busiest
	// first up to the answer's workers limit.
	Workers map[string]float64 `json:"workers,omitempty"`
	// Models is the load of each model at T: the models with a worker or a
	// task, by id.
	Models []ModelLoad `json:"models,omitempty"`
	// TasksSeq moves whenever a task is created or changes status, and
	// WorkersSeq whenever a worker registers, changes state or goes: a page
	// refreshes its task or worker list when one moved, not on a timer.
	TasksSeq   uint64 `json:"tasks_seq"`
	WorkersSeq uint64 `json:"workers_seq"`
}

// ModelLoad is one model's load at a sample.
type ModelLoad struct {
	Model             string `json:"model"`
	QueuedInteractive int    `json:"queued_interactive"`
	QueuedBatch       int    `json:"queued_batch"`
	Running           int    `json:"running"`
	// Workers counts the model's registered workers that are healthy or
	// draining.
	Workers int `json:"workers"`
}

// Stats is GET /v2/stats?window=15m&workers=10: the samples of the window,
// oldest first, as columns of equal length (one value per sample).
type Stats struct {
	IntervalMs int64 `json:"interval_ms"`
	WindowMs   int64 `json:"window_ms"`
	// T holds each sample's time, Unix milliseconds.
	T                 []int64 `json:"t"`
	TokensPerSecond   Series  `json:"tokens_per_second"`
	QueuedInteractive []int   `json:"queued_interactive"`
	QueuedBatch       []int   `json:"queued_batch"`
	Running           []int   `json:"running"`
	// TTFT percentiles: null where no first token came in a sample.
	TTFTP50Ms Series `json:"ttft_p50_ms"`
	TTFTP95Ms Series `json:"ttft_p95_ms"`
	OK        []int  `json:"ok"`
	Rejected  []int  `json:"rejected"`
	Cancelled []int  `json:"cancelled"`
	Failed    []int  `json:"failed"`
	// Workers are per-worker token rates over the window, the workers with
	// the most tokens in it first, at most the workers parameter.
	Workers []WorkerSeries `json:"workers"`
	// Last is the newest sample whole (its models and sequence numbers), nil
	// before the first.
	Last *StatsSample `json:"last,omitempty"`
}

// WorkerSeries is one worker's tokens per second, a value per sample of the
// window (0 where it relayed none, or was not registered).
type WorkerSeries struct {
	WorkerID        string `json:"worker_id"`
	TokensPerSecond Series `json:"tokens_per_second"`
}

// Series is a column of numbers where NaN stands for "no value": it is
// written as JSON null (and null read back as NaN). Values are written with
// at most 4 decimals.
type Series []float64

// MarshalJSON writes the series as a JSON array, NaN as null.
func (s Series) MarshalJSON() ([]byte, error) {
	if s == nil {
		return []byte("[]"), nil
	}
	b := make([]byte, 0, 2+len(s)*6)
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			b = append(b, "null"...)
		default:
			b = strconv.AppendFloat(b, math.Round(v*1e4)/1e4, 'f', -1, 64)
		}
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads a JSON array of numbers and nulls (NaN).
func (s *Series) UnmarshalJSON(b []byte) error {
	var raw []*float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(Series, len(raw))
	for i, p := range raw {
		if p == nil {
			out[i] = math.NaN()
		} else {
			out[i] = *p
		}
	}
	*s = out
	return nil
}

// RoutingCheck is the answer of POST /v2/routing/check: the script of the
// body is tried in a sandboxed child and, when it compiles, run against the
// sample snapshot (Check) and replayed over a snapshot of this orchestrator
// taken now (Replay), as `llorch orchestrate routing check|replay` print
// them. Nothing is loaded.
type RoutingCheck struct {
	OK bool `json:"ok"`
	// Error is why the script fails (compile error with its position, a
	// failed trial, or calls that fell back to the built-in policy).
	Error  string `json:"error,omitempty"`
	Check  string `json:"check,omitempty"`
	Replay string `json:"replay,omitempty"`
}

// AuthInfo is GET /v2/meta/auth, open to all: whether the API wants a key.
// It tells nothing a 401 would not: the dashboard asks for a key before its
// first request instead of provoking one.
type AuthInfo struct {
	KeysRequired bool `json:"keys_required"`
}

// RoutingStatus is GET /v2/routing: the routing script in force, if any.
// Unlike GET /v2/routing/script (404 when none is loaded) it always answers
// 200, for a page that shows either case.
type RoutingStatus struct {
	// Loaded is false when the built-in policy decides alone.
	Loaded bool `json:"loaded"`
	// Name is where the script came from (its file, or "api.tengo").
	Name   string `json:"name,omitempty"`
	Source string `json:"source,omitempty"`
	// Default is the built-in policy written as a documented script
	// (embed/routing/default.tengo): a start for one's own.
	Default string `json:"default,omitempty"`
}
