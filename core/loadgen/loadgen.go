// Package loadgen drives a worker with concurrent streaming requests and
// measures what clients see: time to first token, inter-token latency and
// aggregate generation throughput. `tools/loadgen` runs it; `make bench-slots`
// uses it for the slots benchmark.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

// Config describes one load run.
type Config struct {
	URL   string
	Token string
	// Concurrency is the number of clients sending requests back to back.
	Concurrency int
	// Requests is the total number of requests over all clients.
	Requests int
	// PromptWords and PrefixWords size the prompt: PrefixWords words shared by
	// every request (a common system prompt), then PromptWords-PrefixWords words
	// unique to the request.
	PromptWords int
	PrefixWords int
	MaxTokens   int
	// Warmup requests run first, with the same concurrency, and are not
	// measured (they fill the slots' prompt caches).
	Warmup int
	// Timeout bounds the whole run.
	Timeout time.Duration
}

// Result summarizes a run.
type Result struct {
	Requests       int           `json:"requests"`
	Errors         int           `json:"errors"`
	Wall           time.Duration `json:"wall_ns"`
	GenTokens      int           `json:"gen_tokens"`
	PromptTokens   float64       `json:"avg_prompt_tokens"`
	CachedTokens   float64       `json:"avg_cached_tokens"`
	AggTokensPerS  float64       `json:"aggregate_tokens_per_second"`
	TTFT           Percentiles   `json:"ttft_ms"`
	ITL            Percentiles   `json:"itl_ms"`
	PerRequestTokS float64       `json:"per_request_tokens_per_second"`
	FirstError     string        `json:"first_error,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

func (r Result) String() string {
	return fmt.Sprintf("requests %d (errors %d) in %.2fs: %d tokens, %.1f tok/s aggregate, %.1f tok/s per request; "+
		"prompt %.0f tokens (%.0f cached); TTFT ms p50 %.0f p95 %.0f p99 %.0f; ITL ms p50 %.1f p95 %.1f p99 %.1f",
		r.Requests, r.Errors, r.Wall.Seconds(), r.GenTokens, r.AggTokensPerS, r.PerRequestTokS,
		r.PromptTokens, r.CachedTokens, r.TTFT.P50, r.TTFT.P95, r.TTFT.P99, r.ITL.P50, r.ITL.P95, r.ITL.P99)
}

var words = strings.Fields(`time year people way day man thing woman life child world school state family
student group country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye job word
business issue side kind head house service friend father power hour game line end member law car city
community name president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air teacher force
education river mountain garden window letter market paper music light table field voice stone bridge`)

// Prompt returns the prompt of request i: a shared prefix, then unique words.
func Prompt(cfg Config, i int) string {
	var b strings.Builder
	rng := rand.New(rand.NewPCG(7, 7))
	for range cfg.PrefixWords {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	rng = rand.New(rand.NewPCG(uint64(i)+100, 3))
	fmt.Fprintf(&b, "request %d: ", i)
	for range max(cfg.PromptWords-cfg.PrefixWords, 0) {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}

type sample struct {
	ttft    time.Duration
	itl     []time.Duration
	tokens  int
	prompt  int
	cached  int
	elapsed time.Duration
	err     error
}

// Run sends cfg.Requests requests from cfg.Concurrency clients.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Concurrency < 1 || cfg.Requests < 1 || cfg.MaxTokens < 1 {
		return Result{}, errors.New("loadgen: concurrency, requests and max tokens must be positive")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	client := workerclient.New(cfg.URL, cfg.Token, nil)
	if cfg.Warmup > 0 {
		warm := batch(ctx, client, cfg, cfg.Requests, cfg.Warmup)
		for _, s := range warm {
			if s.err != nil {
				return Result{}, fmt.Errorf("loadgen: warm-up: %w", s.err)
			}
		}
	}
	t0 := time.Now()
	samples := batch(ctx, client, cfg, 0, cfg.Requests)
	return summarize(samples, time.Since(t0)), nil
}

// batch runs requests first..first+n-1 over cfg.Concurrency clients.
func batch(ctx context.Context, client *workerclient.Client, cfg Config, first, n int) []sample {
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	samples := make([]sample, n)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for i := range next {
				if ctx.Err() != nil {
					samples[i].err = ctx.Err()
					continue
				}
				samples[i] = one(ctx, client, cfg, first+i)
			}
		})
	}
	wg.Wait()
	return samples
}

func one(ctx context.Context, c *workerclient.Client, cfg Config, i int) sample {
	temp := 0.0
	req := &api.ExecuteRequest{Prompt: Prompt(cfg, i), MaxTokens: &cfg.MaxTokens, Temperature: &temp, IgnoreEOS: true}
	var s sample
	start := time.Now()
	for attempt := 0; ; attempt++ {
		st, err := c.Execute(ctx, req)
		var se *workerclient.StatusError
		if errors.As(err, &se) && se.Err.Code == api.CodeAllSlotsBusy && attempt < 100 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			s.err = err
			return s
		}
		defer st.Close()
		last := start
		for {
			ev, err := st.Next()
			if err != nil {
				s.err = err
				return s
			}
			now := time.Now()
			switch {
			case ev.Token != nil:
				if s.tokens == 0 {
					s.ttft = now.Sub(start)
				} else {
					s.itl = append(s.itl, now.Sub(last))
				}
				last = now
				s.tokens++
			case ev.End != nil:
				s.prompt, s.cached = ev.End.PromptTokens, ev.End.CachedTokens
				s.elapsed = now.Sub(start)
				return s
			case ev.Error != nil:
				s.err = ev.Error
				return s
			}
		}
	}
}

func summarize(samples []sample, wall time.Duration) Result {
	r := Result{Wall: wall}
	var ttft, itl []time.Duration
	var perReq float64
	ok := 0
	for _, s := range samples {
		r.Requests++
		if s.err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = s.err.Error()
			}
			continue
		}
		ok++
		r.GenTokens += s.tokens
		r.PromptTokens += float64(s.prompt)
		r.CachedTokens += float64(s.cached)
		ttft = append(ttft, s.ttft)
		itl = append(itl, s.itl...)
		if s.elapsed > 0 {
			perReq += float64(s.tokens) / s.elapsed.Seconds()
		}
	}
	if ok > 0 {
		r.PromptTokens /= float64(ok)
		r.CachedTokens /= float64(ok)
		r.PerRequestTokS = perReq / float64(ok)
	}
	r.AggTokensPerS = float64(r.GenTokens) / wall.Seconds()
	r.TTFT = percentiles(ttft)
	r.ITL = percentiles(itl)
	return r
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := min(len(d)-1, int(q*float64(len(d))))
		return float64(d[i].Microseconds()) / 1000
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}
