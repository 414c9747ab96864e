package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func TestConversations(t *testing.T) {
	convs := conversations(3, 4, sizing{systemWords: 50, userWords: 8})
	if len(convs) != 3 {
		t.Fatalf("%d conversations, want 3", len(convs))
	}
	seen := map[string]bool{}
	for _, c := range convs {
		if n := len(strings.Fields(c.system)); n < 50 {
			t.Errorf("system prompt of %d words, want at least 50", n)
		}
		for _, u := range append([]string{c.system}, c.users...) {
			if seen[u] {
				t.Errorf("text used twice: %q", u)
			}
			seen[u] = true
		}
	}
	c := convs[1]
	got := c.messages(2, []string{"a1", "a2"})
	want := []message{{"system", c.system}, {"user", c.users[0]}, {"assistant", "a1"}, {"user", c.users[1]}, {"assistant", "a2"}, {"user", c.users[2]}}
	if len(got) != len(want) {
		t.Fatalf("turn 3: %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("turn 3, message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if first := c.messages(0, nil); len(first) != 2 || first[1].Content != c.users[0] {
		t.Errorf("turn 1: %+v", first)
	}
}

func TestSummarize(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	samples := []sample{
		{Conv: 0, Turn: 0, TTFT: ms(400), E2E: ms(900), Completion: 32, PromptTokens: 450},
		{Conv: 0, Turn: 1, TTFT: ms(100), E2E: ms(600), Completion: 32, PromptTokens: 520, Cached: 480},
		{Conv: 1, Turn: 0, TTFT: ms(300), E2E: ms(800), Completion: 32, PromptTokens: 430},
		{Conv: 1, Turn: 1, TTFT: ms(200), E2E: ms(700), Completion: 30, PromptTokens: 500, Cached: 0},
		{Conv: 2, Turn: 0, Err: errors.New("boom")},
	}
	r := summarize("cache-aware", samples, 2*time.Second, 32)
	check := func(name string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("requests", float64(r.Requests), 5)
	check("errors", float64(r.Errors), 1)
	check("TTFT p50", r.TTFTP50Ms, 300) // nearest rank of 100 200 300 400
	check("TTFT p95", r.TTFTP95Ms, 400)
	check("TTFT p50 turns 2+", r.TTFTP50LaterMs, 200)
	check("e2e p50", r.E2EP50Ms, 800)
	check("tokens/s", r.TokensPerS, 63)
	check("hit ratio", r.HitRatio, 480.0/1900)
	if len(r.PromptByTurn) != 2 || r.PromptByTurn[0] != 440 || r.PromptByTurn[1] != 510 || r.CachedByTurn[1] != 240 {
		t.Errorf("by turn: prompt %v, cached %v", r.PromptByTurn, r.CachedByTurn)
	}
	check("short", float64(r.Short), 1)
	if !strings.Contains(r.FirstError, "conversation 3 turn 1: boom") {
		t.Errorf("first error %q", r.FirstError)
	}

	tasks := []api.TaskStatus{
		{WorkerID: "cb1", Text: "x", End: &api.End{PromptTokens: 450}},
		{WorkerID: "cb1", Text: "y", End: &api.End{PromptTokens: 520}},
		{WorkerID: "cb2", Text: "x", End: &api.End{PromptTokens: 430}},
		{WorkerID: "cb3", Text: "z", End: &api.End{PromptTokens: 500}},
	}
	for i, text := range []string{"x", "y", "x", "z"} {
		samples[i].Text = text
	}
	r.spread(samples[:4], tasks)
	if r.PerWorker["cb1"] != 2 || r.PerWorker["cb2"] != 1 || r.PerWorker["cb3"] != 1 {
		t.Errorf("per worker %v", r.PerWorker)
	}
	if r.MatchedConvs != 2 || r.OneWorkerConvs != 1 {
		t.Errorf("%d of %d conversations on one worker, want 1 of 2", r.OneWorkerConvs, r.MatchedConvs)
	}

	cmp := compare([]runStats{{Policy: "least-loaded", TTFTP50Ms: 600, TokensPerS: 60}, r})
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
