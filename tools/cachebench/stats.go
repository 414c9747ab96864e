package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bench"
)

// runStats summarizes one policy's run.
type runStats struct {
	Policy           string         `json:"policy"`
	Requests         int            `json:"requests"`
	Errors           int            `json:"errors"`
	FirstError       string         `json:"first_error,omitempty"`
	TTFTP50Ms        float64        `json:"ttft_p50_ms"`
	TTFTP95Ms        float64        `json:"ttft_p95_ms"`
	TTFTP50LaterMs   float64        `json:"ttft_p50_turns_2_on_ms"` // turn 1 can never hit
	E2EP50Ms         float64        `json:"e2e_p50_ms"`
	WallS            float64        `json:"wall_s"`
	CompletionTokens int            `json:"completion_tokens"`
	TokensPerS       float64        `json:"output_tokens_per_s"`
	PromptTokens     int            `json:"prompt_tokens"`
	CachedTokens     int            `json:"cached_tokens"`
	HitRatio         float64        `json:"hit_ratio"`
	PromptByTurn     []float64      `json:"prompt_tokens_mean_by_turn"`
	CachedByTurn     []float64      `json:"cached_tokens_mean_by_turn"`
	Short            int            `json:"short_requests"` // fewer completion tokens than max_tokens: an EOS got through
	PerWorker        map[string]int `json:"requests_per_worker,omitempty"`
	OneWorkerConvs   int            `json:"conversations_on_one_worker"`
	MatchedConvs     int            `json:"conversations_matched_to_tasks"`
	PrefixMetrics    []string       `json:"prefix_metrics,omitempty"`
}

// summarize computes a run's figures from its step (as core/bench
// measured it) and its requests' results.
func summarize(policy string, st bench.Step, results []bench.Result) runStats {
	r := runStats{Policy: policy, Requests: st.Requests, Errors: st.Requests - st.OK, WallS: st.DurationS,
		TTFTP50Ms: st.TTFT.P50, TTFTP95Ms: st.TTFT.P95, E2EP50Ms: st.E2E.P50,
		CompletionTokens: st.OutputTokens, TokensPerS: st.OutputTokPerS, Short: st.Short}
	var later []float64
	var n []int
	for _, s := range results {
		if s.Err != "" {
			if r.FirstError == "" {
				r.FirstError = fmt.Sprintf("conversation %d turn %d: %s %s", s.Session+1, s.Turn+1, s.Err, s.ErrMessage)
			}
			continue
		}
		if s.Turn > 0 && s.TTFT > 0 {
			later = append(later, float64(s.TTFT)/float64(time.Millisecond))
		}
		for len(n) <= s.Turn {
			n, r.PromptByTurn, r.CachedByTurn = append(n, 0), append(r.PromptByTurn, 0), append(r.CachedByTurn, 0)
		}
		n[s.Turn]++
		r.PromptByTurn[s.Turn] += float64(s.PromptTokens)
		r.CachedByTurn[s.Turn] += float64(s.CachedTokens)
		r.PromptTokens += s.PromptTokens
		r.CachedTokens += s.CachedTokens
	}
	r.TTFTP50LaterMs = bench.Distribution(later).P50
	if r.PromptTokens > 0 {
		r.HitRatio = float64(r.CachedTokens) / float64(r.PromptTokens)
	}
	for k, c := range n {
		if c > 0 {
			r.PromptByTurn[k] /= float64(c)
			r.CachedByTurn[k] /= float64(c)
		}
	}
	return r
}

// spread fills in how the run's requests went over the workers: requests per
// worker, and how many conversations kept every turn on one worker. A
// sample is matched to its task by answer text and prompt size.
func (r *runStats) spread(samples []bench.Result, tasks []api.TaskStatus) {
	type key struct {
		text   string
		prompt int
	}
	worker := map[key]string{}
	dup := map[key]bool{}
	r.PerWorker = map[string]int{}
	for _, t := range tasks {
		r.PerWorker[t.WorkerID]++
		if t.End == nil {
			continue
		}
		k := key{t.Text, t.End.PromptTokens}
		if _, ok := worker[k]; ok {
			dup[k] = true
		}
		worker[k] = t.WorkerID
	}
	byConv := map[int][]string{}
	failed := map[int]bool{}
	for _, s := range samples {
		k := key{s.Text, s.PromptTokens}
		w, ok := worker[k]
		if s.Err != "" || !ok || dup[k] {
			failed[s.Session] = true
			continue
		}
		byConv[s.Session] = append(byConv[s.Session], w)
	}
	for c, ws := range byConv {
		if failed[c] {
			continue
		}
		r.MatchedConvs++
		if len(slices.Compact(slices.Sorted(slices.Values(ws)))) == 1 {
			r.OneWorkerConvs++
		}
	}
}

// prefixLines returns the llorch_prefix_* samples of a Prometheus text
// exposition.
func prefixLines(metrics string) []string {
	var out []string
	for line := range strings.Lines(metrics) {
		if strings.HasPrefix(line, "llorch_prefix_") {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return out
}

// comparison is cache-aware against least-loaded.
type comparison struct {
	// TTFTP50Speedup is least-loaded's TTFT p50 over cache-aware's: the
	// issue's goal is at least 2.
	TTFTP50Speedup      float64 `json:"ttft_p50_least_loaded_over_cache_aware"`
	TTFTP50LaterSpeedup float64 `json:"ttft_p50_turns_2_on_least_loaded_over_cache_aware"`
	// TokensPerSRatio is cache-aware's tokens/s over least-loaded's: the goal
	// is at least 1.
	TokensPerSRatio float64 `json:"tokens_per_s_cache_aware_over_least_loaded"`
}

// compare returns the comparison when runs hold both policies.
func compare(runs []runStats) *comparison {
	var ll, ca *runStats
	for i := range runs {
		switch runs[i].Policy {
		case "least-loaded":
			ll = &runs[i]
		case "cache-aware":
			ca = &runs[i]
		}
	}
	if ll == nil || ca == nil {
		return nil
	}
	return &comparison{TTFTP50Speedup: ratio(ll.TTFTP50Ms, ca.TTFTP50Ms),
		TTFTP50LaterSpeedup: ratio(ll.TTFTP50LaterMs, ca.TTFTP50LaterMs), TokensPerSRatio: ratio(ca.TokensPerS, ll.TokensPerS)}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// printTable writes the report.
func printTable(w io.Writer, runs []runStats, cmp *comparison) {
	fmt.Fprintf(w, "\n%-13s %5s %4s %9s %9s %13s %9s %8s %6s\n",
		"policy", "reqs", "errs", "TTFT p50", "TTFT p95", "TTFT p50 t2+", "e2e p50", "tok/s", "hits")
	for _, r := range runs {
		fmt.Fprintf(w, "%-13s %5d %4d %7.0fms %7.0fms %11.0fms %7.0fms %8.1f %5.1f%%\n", r.Policy, r.Requests, r.Errors,
			r.TTFTP50Ms, r.TTFTP95Ms, r.TTFTP50LaterMs, r.E2EP50Ms, r.TokensPerS, 100*r.HitRatio)
	}
	if cmp != nil {
		fmt.Fprintf(w, "cache-aware vs least-loaded: TTFT p50 %.2f× lower (turns 2+: %.2f×), tokens/s ×%.2f\n",
			cmp.TTFTP50Speedup, cmp.TTFTP50LaterSpeedup, cmp.TokensPerSRatio)
	}
	for _, r := range runs {
		fmt.Fprintf(w, "\n%s: %.1fs wall, %d completion tokens, %d of %d prompt tokens cached\n",
			r.Policy, r.WallS, r.CompletionTokens, r.CachedTokens, r.PromptTokens)
		var turns []string
		for k := range r.PromptByTurn {
			turns = append(turns, fmt.Sprintf("%.0f (%.0f cached)", r.PromptByTurn[k], r.CachedByTurn[k]))
		}
		fmt.Fprintf(w, "  prompt tokens by turn, mean: %s\n", strings.Join(turns, ", "))
		if len(r.PerWorker) > 0 {
			var parts []string
			for _, id := range slices.Sorted(maps.Keys(r.PerWorker)) {
				parts = append(parts, fmt.Sprintf("%s %d", id, r.PerWorker[id]))
			}
			fmt.Fprintf(w, "  requests per worker: %s; conversations with every turn on one worker: %d of %d matched\n",
				strings.Join(parts, ", "), r.OneWorkerConvs, r.MatchedConvs)
		}
		if r.Short > 0 {
			fmt.Fprintf(w, "  %d requests ended before max_tokens (an end-of-generation token got through)\n", r.Short)
		}
		if r.FirstError != "" {
			fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
		}
		for _, l := range r.PrefixMetrics {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}
