package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/llorch/llorch/core/bench"
)

// workload runs cfg's conversations through core/bench, the one load
// generator, against the orchestrator at url: -conversations sessions of
// -turns turns over /v1/chat/completions, each with a system prompt of its
// own, -concurrency conversations at once (0: all). It returns the step's
// figures, every request's result and the calibration as the report states
// it.
func workload(ctx context.Context, cfg config, url, model string) (bench.Step, []bench.Result, bench.Workload, error) {
	k := cfg.concurrency
	if k == 0 {
		k = cfg.conversations
	}
	timeout := cfg.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	var (
		mu      sync.Mutex
		results []bench.Result
	)
	rep, err := bench.Run(ctx, bench.Config{
		URL: url, API: bench.APIOpenAI, Endpoint: bench.EndpointChat, Model: model,
		PromptTokens:     bench.Lengths{Kind: "fixed", A: cfg.systemTokens + cfg.userTokens},
		GenTokens:        bench.Lengths{Kind: "fixed", A: cfg.maxTokens},
		SharedPrefix:     cfg.systemTokens,
		PrefixPerSession: true,
		Sessions:         cfg.conversations, Turns: cfg.turns,
		Concurrency: []int{k}, Timeout: timeout, IgnoreEOS: true, Seed: 1, Label: "cachebench",
		OnRequest: func(r bench.Result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		},
	}, nil)
	if err != nil {
		return bench.Step{}, nil, bench.Workload{}, err
	}
	if len(rep.Steps) != 1 {
		return bench.Step{}, nil, bench.Workload{}, fmt.Errorf("workload: %d steps measured, want 1", len(rep.Steps))
	}
	mu.Lock()
	defer mu.Unlock()
	return rep.Steps[0], results, rep.Workload, nil
}
