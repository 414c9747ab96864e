// Command featbench measures what the OpenAI features cost a worker's
// decode: the same request plain, with logprobs, and under a permissive and
// a narrow grammar, run in turn for a few rounds against one worker, and
// prints decode tokens/s (tokens_out / decode_time_ms of the end event) per
// variant as the median of its runs.
//
//	go run ./tools/featbench -url http://127.0.0.1:8012 -tokens 96 -rounds 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8001", "worker URL")
	token := flag.String("token", "", "worker bearer token")
	tokens := flag.Int("tokens", 96, "tokens generated per request")
	rounds := flag.Int("rounds", 3, "rounds; every variant runs once per round, in turn")
	flag.Parse()
	if err := run(*url, *token, *tokens, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "featbench:", err)
		os.Exit(1)
	}
}

type variant struct {
	name string
	set  func(r *api.ExecuteRequest)
}

var variants = []variant{
	{"plain", func(r *api.ExecuteRequest) {}},
	{"logprobs, 20 alternatives", func(r *api.ExecuteRequest) { r.Logprobs, r.TopLogprobs = true, 20 }},
	// Every token but controls and '"' is allowed: the chain's own pick
	// is nearly always allowed, and the lazy check costs one token.
	{"grammar, permissive", func(r *api.ExecuteRequest) {
		r.IgnoreEOS, r.Grammar = false, fmt.Sprintf(`root ::= [^\x00-\x1f"]{%d,%d}`, *r.MaxTokens*2, *r.MaxTokens*4)
	}},
	// 27 characters: a random-weight model's pick is nearly always refused,
	// so every step pays a grammar pass over the vocabulary.
	{"grammar, narrow", func(r *api.ExecuteRequest) {
		r.IgnoreEOS, r.Grammar = false, fmt.Sprintf(`root ::= [a-z ]{%d,%d}`, *r.MaxTokens, *r.MaxTokens*2)
	}},
}

func run(url, token string, tokens, rounds int) error {
	c := workerclient.New(url, token, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rates := make([][]float64, len(variants))
	for round := range rounds + 1 { // round 0 warms up
		for i, v := range variants {
			r := &api.ExecuteRequest{Prompt: "Once upon a time", MaxTokens: &tokens, Seed: ptr(int64(round)), IgnoreEOS: true,
				CachePrompt: ptr(false)}
			v.set(r)
			res, err := c.Collect(ctx, r)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			if res.Error != nil || res.End == nil || res.End.DecodeTimeMs <= 0 {
				return fmt.Errorf("%s: %+v %+v", v.name, res.Error, res.End)
			}
			if round > 0 {
				rates[i] = append(rates[i], float64(res.End.TokensOut)/(res.End.DecodeTimeMs/1000))
			}
		}
	}
	base := median(rates[0])
	fmt.Printf("%-28s %10s %8s\n", "variant", "tok/s", "vs plain")
	for i, v := range variants {
		m := median(rates[i])
		fmt.Printf("%-28s %10.1f %8.2f\n", v.name, m, m/base)
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func ptr[T any](v T) *T { return &v }
