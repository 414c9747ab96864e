// Command cachebench measures cache-aware routing (issue #17): for each
// routing policy it starts a fresh orchestrator and workers (cold caches),
// runs multi-turn conversations through the orchestrator's
// /v1/chat/completions, and reports TTFT, output tokens/s and the observed
// prompt-cache hit ratio per policy, then cache-aware against least-loaded.
//
//	go run ./tools/cachebench -bin bin/llorch -model .cache/models/qwen05-q4_0.gguf
//
// The workload is core/bench's sessions (the load generator of `llorch ctl
// bench`): -conversations conversations of -turns turns over the
// orchestrator's /v1/chat/completions, with no session id, -concurrency
// conversations at once (0: all), each its turns in sequence (a turn
// carries the answers so far). Every conversation has a system prompt of
// its own of about -system-tokens tokens, so two conversations share no
// prefix beyond the chat template's; a first turn is about -system-tokens
// + -user-tokens tokens, template included, and each later turn adds the
// answer and a user message of the same size. Requests stream with
// include_usage, temperature 0 and ignore_eos, so each produces
// -max-tokens tokens. core/bench measures TTFT (send to first chunk with
// content) and output tokens/s (over the step's wall time); the hit ratio
// is Σ cached_tokens / Σ prompt_tokens of the requests. `make bench-cache`
// runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bench"
)

type config struct {
	bin, model    string
	policies      []string
	workers       int
	slots         int
	threads       int
	ctx           int
	conversations int
	turns         int
	systemTokens  int
	userTokens    int
	maxTokens     int
	concurrency   int
	timeout       time.Duration
	jsonPath      string
}

func main() {
	var cfg config
	policies := flag.String("policies", "least-loaded,cache-aware", "routing policies to run, in order (comma-separated)")
	flag.StringVar(&cfg.bin, "bin", "bin/llorch", "the llorch binary")
	flag.StringVar(&cfg.model, "model", "", "GGUF model the workers load (required)")
	flag.IntVar(&cfg.workers, "workers", 3, "workers")
	flag.IntVar(&cfg.slots, "slots", 8, "slots per worker (8 × 3 workers: room for every conversation's cache, so routing, not eviction, decides the hit)")
	flag.IntVar(&cfg.threads, "threads", 1, "CPU threads per worker")
	flag.IntVar(&cfg.ctx, "ctx", 2048, "context per slot in tokens (a random model's answers take far more tokens once sent back as text)")
	flag.IntVar(&cfg.conversations, "conversations", 12, "conversations at once")
	flag.IntVar(&cfg.turns, "turns", 4, "turns per conversation")
	flag.IntVar(&cfg.systemTokens, "system-tokens", 400, "system prompt size in tokens (about)")
	flag.IntVar(&cfg.userTokens, "user-tokens", 30, "a first turn's tokens besides the system prompt: a user message and the chat template (about)")
	flag.IntVar(&cfg.maxTokens, "max-tokens", 16, "tokens generated per request (the synthetic model's answers come back as text about 8 times as many tokens, none of them cached: see the README)")
	flag.IntVar(&cfg.concurrency, "concurrency", 6, "conversations at once, each its turns in sequence (0: every conversation)")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "bound on the whole benchmark")
	flag.StringVar(&cfg.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.Parse()
	cfg.policies = strings.Split(*policies, ",")
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cachebench:", err)
		os.Exit(1)
	}
}

func (c *config) validate() error {
	if c.model == "" {
		return fmt.Errorf("-model is required")
	}
	for _, p := range c.policies {
		if p == "" {
			return fmt.Errorf("-policies: empty policy name")
		}
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"workers", c.workers}, {"slots", c.slots}, {"threads", c.threads}, {"ctx", c.ctx}, {"conversations", c.conversations},
		{"turns", c.turns}, {"system-tokens", c.systemTokens}, {"user-tokens", c.userTokens}, {"max-tokens", c.maxTokens}} {
		if v.n < 1 {
			return fmt.Errorf("-%s must be positive", v.name)
		}
	}
	if c.timeout <= 0 || c.concurrency < 0 {
		return fmt.Errorf("-concurrency must not be negative, -timeout must be positive")
	}
	if c.maxTokens < 2 {
		return fmt.Errorf("-max-tokens must be at least 2 (one-token tasks are the calibration's)")
	}
	return nil
}

// report is what -json writes.
type report struct {
	Command    []string    `json:"command"`
	Model      string      `json:"model"`
	Runs       []runStats  `json:"runs"`
	Comparison *comparison `json:"comparison,omitempty"`
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	fmt.Fprintf(out, "cachebench: %d workers × %d slots (ctx %d, threads %d), %d conversations × %d turns, ~%d-token system prompts, first turns of ~%d tokens, %d tokens out (ignore_eos)\n",
		cfg.workers, cfg.slots, cfg.ctx, cfg.threads, cfg.conversations, cfg.turns, cfg.systemTokens, cfg.systemTokens+cfg.userTokens, cfg.maxTokens)
	var runs []runStats
	for _, policy := range cfg.policies {
		r, err := runPolicy(ctx, cfg, policy, out)
		if err != nil {
			return fmt.Errorf("%s: %w", policy, err)
		}
		runs = append(runs, r)
	}
	cmp := compare(runs)
	printTable(out, runs, cmp)
	if cfg.jsonPath != "" {
		data, err := json.MarshalIndent(report{Command: os.Args, Model: cfg.model, Runs: runs, Comparison: cmp}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	for _, r := range runs {
		if r.Errors > 0 {
			return fmt.Errorf("%s: %d of %d requests failed", r.Policy, r.Errors, r.Requests)
		}
	}
	return nil
}

// runPolicy starts a fleet with policy, runs the workload and stops the fleet.
func runPolicy(ctx context.Context, cfg config, policy string, out io.Writer) (runStats, error) {
	fmt.Fprintf(out, "== %s: starting an orchestrator and %d workers\n", policy, cfg.workers)
	f, err := startFleet(ctx, fleetConfig{bin: cfg.bin, model: cfg.model, policy: policy, workers: cfg.workers,
		slots: cfg.slots, threads: cfg.threads, ctx: cfg.ctx, readyTimeout: 3 * time.Minute, stopGrace: 10 * time.Second})
	if err != nil {
		return runStats{}, err
	}
	defer f.stop(10 * time.Second)
	ws, err := f.client.Workers(ctx)
	if err != nil || len(ws) == 0 {
		return runStats{}, fmt.Errorf("listing workers: %v (%d)", err, len(ws))
	}
	before, err := f.client.Tasks(ctx, "")
	if err != nil {
		return runStats{}, err
	}
	skip := map[string]bool{}
	for _, t := range before {
		skip[t.TaskID] = true
	}
	st, results, wl, err := workload(ctx, cfg, f.url, ws[0].Model.ID)
	if err != nil {
		return runStats{}, err
	}
	if ctx.Err() != nil {
		return runStats{}, fmt.Errorf("workload: %w", ctx.Err())
	}
	if !wl.Calibrated {
		return runStats{}, fmt.Errorf("calibration: the orchestrator reported no prompt tokens%s", f.logs())
	}
	fmt.Fprintf(out, "   calibration: %.2f tokens a word, %.1f tokens of template; first turns %.0f prompt tokens on average\n",
		wl.TokensPerWord, wl.PromptOverhead, firstTurn(results))
	r := summarize(policy, st, results)
	if tasks, err := f.tasks(ctx, skip); err == nil {
		// The calibration's one-token probes are tasks too: only the
		// workload's count.
		tasks = slices.DeleteFunc(tasks, func(t api.TaskStatus) bool { return t.TokensOut <= 1 })
		r.spread(results, tasks)
	} else {
		fmt.Fprintf(out, "   listing tasks: %v\n", err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	metrics, err := scrape(ctx, hc, f.url+"/metrics")
	if err != nil {
		fmt.Fprintf(out, "   scraping /metrics: %v\n", err)
	}
	r.PrefixMetrics = prefixLines(metrics)
	if r.Errors > 0 {
		fmt.Fprintf(out, "   %d requests failed; logs:%s\n", r.Errors, f.logs())
	}
	return r, nil
}

// firstTurn is the mean prompt tokens of the first turns that succeeded.
func firstTurn(results []bench.Result) float64 {
	sum, n := 0, 0
	for _, r := range results {
		if r.Turn == 0 && r.Err == "" {
			sum, n = sum+r.PromptTokens, n+1
		}
	}
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n)
}

// scrape returns the body of a GET of url.
func scrape(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxRequestBytes))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(body), err
}
