// Command cachebench measures cache-aware routing (issue #17): for each
// routing policy it starts a fresh orchestrator and workers (cold caches),
// runs multi-turn conversations through the orchestrator's
// /v1/chat/completions, and reports TTFT, output tokens/s and the observed
// prompt-cache hit ratio per policy, then cache-aware against least-loaded.
//
//	go run ./tools/cachebench -bin bin/llorch -model .cache/models/qwen05-q4_0.gguf
//
// The workload: -conversations conversations of -turns turns, with no session
// id, sent round-robin — turn 1 of every conversation, then turn 2 of every
// conversation, … — with -concurrency requests in flight (a closed loop; a
// turn waits for its conversation's previous answer). With -concurrency 0
// every conversation runs at once instead (starts -stagger apart), each its
// turns in sequence: with as many slots as conversations, every policy then
// keeps a conversation on its worker, as a freed slot is the only one free. Every conversation has its own system prompt of about -system-tokens
// tokens; turn k sends it, the earlier user messages (about -user-tokens
// each, distinct text) and assistant answers (as returned), and user message
// k. Requests stream with include_usage, temperature 0 and a logit_bias that
// bans the model's end-of-generation tokens, so each produces -max-tokens
// tokens. TTFT runs from sending a request to its first chunk with content;
// tokens/s is all completion tokens over the run's wall time; the hit ratio
// is Σ cached_tokens / Σ prompt_tokens. `make bench-cache` runs it.
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
	"strings"
	"syscall"
	"time"

	"github.com/llorch/llorch/core/api"
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
	stagger       time.Duration
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
	flag.IntVar(&cfg.userTokens, "user-tokens", 30, "user message size in tokens (about)")
	flag.IntVar(&cfg.maxTokens, "max-tokens", 16, "tokens generated per request (the synthetic model's answers come back as text about 8 times as many tokens, none of them cached: see the README)")
	flag.DurationVar(&cfg.stagger, "stagger", 100*time.Millisecond, "delay between conversations' starts (with -concurrency 0)")
	flag.IntVar(&cfg.concurrency, "concurrency", 6, "requests in flight, turns sent round-robin across conversations (0: every conversation at once, each its turns in sequence)")
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
	if c.stagger < 0 || c.timeout <= 0 || c.concurrency < 0 {
		return fmt.Errorf("-stagger and -concurrency must not be negative, -timeout must be positive")
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
	eog, err := eogTokens(cfg.model)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cachebench: %d workers × %d slots (ctx %d, threads %d), %d conversations × %d turns, ~%d-token system prompts, ~%d-token user messages, %d tokens out; end-of-generation tokens banned: %v\n",
		cfg.workers, cfg.slots, cfg.ctx, cfg.threads, cfg.conversations, cfg.turns, cfg.systemTokens, cfg.userTokens, cfg.maxTokens, eog)
	var runs []runStats
	for _, policy := range cfg.policies {
		r, err := runPolicy(ctx, cfg, policy, noEOSBias(eog), out)
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
func runPolicy(ctx context.Context, cfg config, policy string, bias map[string]float64, out io.Writer) (runStats, error) {
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
	cl := &client{url: f.url, model: ws[0].Model.ID, maxTokens: cfg.maxTokens, bias: bias,
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.conversations}}}
	sz, err := calibrate(ctx, cl, cfg.systemTokens, cfg.userTokens)
	if err != nil {
		return runStats{}, fmt.Errorf("%w%s", err, f.logs())
	}
	before, err := f.client.Tasks(ctx, "")
	if err != nil {
		return runStats{}, err
	}
	skip := map[string]bool{}
	for _, t := range before {
		skip[t.TaskID] = true
	}
	fmt.Fprintf(out, "   calibration: %d prompt tokens with an empty system prompt, %d with %d words (%.2f tokens a word): system prompts %d words, user messages %d words\n",
		sz.base, sz.long, probeWords, sz.perWord, sz.systemWords, sz.userWords)
	samples, wall := workload(ctx, cl, conversations(cfg.conversations, cfg.turns, sz), cfg.stagger, cfg.concurrency)
	if ctx.Err() != nil {
		return runStats{}, fmt.Errorf("workload: %w", ctx.Err())
	}
	r := summarize(policy, samples, wall, cfg.maxTokens)
	if tasks, err := f.tasks(ctx, skip); err == nil {
		r.spread(samples, tasks)
	} else {
		fmt.Fprintf(out, "   listing tasks: %v\n", err)
	}
	metrics, err := scrape(ctx, cl.hc, f.url+"/metrics")
	if err != nil {
		fmt.Fprintf(out, "   scraping /metrics: %v\n", err)
	}
	r.PrefixMetrics = prefixLines(metrics)
	if r.Errors > 0 {
		fmt.Fprintf(out, "   %d requests failed; logs:%s\n", r.Errors, f.logs())
	}
	return r, nil
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
