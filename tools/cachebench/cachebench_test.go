package main

import (
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bench"
)

// A run's figures: overall ones from core/bench's step, by turn and the
// hit ratio from the requests' results.
func TestSummarize(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	st := bench.Step{Requests: 5, OK: 4, DurationS: 2, OutputTokens: 126, OutputTokPerS: 63, Short: 1,
		TTFT: bench.Dist{P50: 250, P95: 385}, E2E: bench.Dist{P50: 750}}
	results := []bench.Result{
		{Session: 0, Turn: 0, TTFT: ms(400), E2E: ms(900), OutputTokens: 32, PromptTokens: 450},
		{Session: 0, Turn: 1, TTFT: ms(100), E2E: ms(600), OutputTokens: 32, PromptTokens: 520, CachedTokens: 480},
		{Session: 1, Turn: 0, TTFT: ms(300), E2E: ms(800), OutputTokens: 32, PromptTokens: 430},
		{Session: 1, Turn: 1, TTFT: ms(200), E2E: ms(700), OutputTokens: 30, PromptTokens: 500, CachedTokens: 0},
		{Session: 2, Turn: 0, Err: "500 INTERNAL", ErrMessage: "boom"},
	}
	r := summarize("cache-aware", st, results)
	check := func(name string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("requests", float64(r.Requests), 5)
	check("errors", float64(r.Errors), 1)
	check("TTFT p50", r.TTFTP50Ms, 250)
	check("TTFT p95", r.TTFTP95Ms, 385)
	check("TTFT p50 turns 2+", r.TTFTP50LaterMs, 150) // 100 and 200, interpolated
	check("e2e p50", r.E2EP50Ms, 750)
	check("tokens/s", r.TokensPerS, 63)
	check("hit ratio", r.HitRatio, 480.0/1900)
	if len(r.PromptByTurn) != 2 || r.PromptByTurn[0] != 440 || r.PromptByTurn[1] != 510 || r.CachedByTurn[1] != 240 {
		t.Errorf("by turn: prompt %v, cached %v", r.PromptByTurn, r.CachedByTurn)
	}
	check("short", float64(r.Short), 1)
	if !strings.Contains(r.FirstError, "conversation 3 turn 1: 500 INTERNAL boom") {
		t.Errorf("first error %q", r.FirstError)
	}

	tasks := []api.TaskStatus{
		{WorkerID: "cb1", Text: "x", End: &api.End{PromptTokens: 450}},
		{WorkerID: "cb1", Text: "y", End: &api.End{PromptTokens: 520}},
		{WorkerID: "cb2", Text: "x", End: &api.End{PromptTokens: 430}},
		{WorkerID: "cb3", Text: "z", End: &api.End{PromptTokens: 500}},
	}
	for i, text := range []string{"x", "y", "x", "z"} {
		results[i].Text = text
	}
	r.spread(results[:4], tasks)
	if r.PerWorker["cb1"] != 2 || r.PerWorker["cb2"] != 1 || r.PerWorker["cb3"] != 1 {
		t.Errorf("per worker %v", r.PerWorker)
	}
	if r.MatchedConvs != 2 || r.OneWorkerConvs != 1 {
		t.Errorf("%d of %d conversations on one worker, want 1 of 2", r.OneWorkerConvs, r.MatchedConvs)
	}

	cmp := compare([]runStats{{Policy: "least-loaded", TTFTP50Ms: 500, TokensPerS: 60}, r})
	if cmp == nil || cmp.TTFTP50Speedup != 2 || cmp.TokensPerSRatio != 63.0/60 {
		t.Errorf("comparison %+v", cmp)
	}
}

func TestPrefixLines(t *testing.T) {
	m := "# HELP llorch_prefix_index_blocks x\n# TYPE llorch_prefix_index_blocks gauge\nllorch_prefix_index_blocks 7\n" +
		"llorch_tasks_total 3\nllorch_prefix_cache_hit_tokens_total{worker=\"cb1\"} 12\n"
	got := prefixLines(m)
	if len(got) != 2 || got[0] != "llorch_prefix_index_blocks 7" || !strings.HasSuffix(got[1], "} 12") {
		t.Errorf("prefixLines = %q", got)
	}
	if got := prefixLines("llorch_tasks_total 3\n"); got != nil {
		t.Errorf("prefixLines without any = %q", got)
	}
}
