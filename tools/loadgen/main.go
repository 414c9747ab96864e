// Command loadgen sends concurrent streaming requests to a worker and prints
// TTFT, inter-token latency and aggregate tokens/s (see core/loadgen).
//
//	go run ./tools/loadgen -url http://127.0.0.1:8001 -k 4 -n 8 -words 180 -max-tokens 128
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/llorch/llorch/core/loadgen"
)

func main() {
	var cfg loadgen.Config
	asJSON := flag.Bool("json", false, "print JSON")
	flag.StringVar(&cfg.URL, "url", "http://127.0.0.1:8001", "worker URL")
	flag.StringVar(&cfg.Token, "token", "", "worker bearer token")
	flag.IntVar(&cfg.Concurrency, "k", 1, "concurrent clients")
	flag.IntVar(&cfg.Requests, "n", 4, "total requests")
	flag.IntVar(&cfg.PromptWords, "words", 180, "prompt length in words")
	flag.IntVar(&cfg.PrefixWords, "prefix-words", 0, "words of a prefix shared by all requests")
	flag.IntVar(&cfg.MaxTokens, "max-tokens", 128, "tokens generated per request (EOS ignored)")
	flag.IntVar(&cfg.Warmup, "warmup", 0, "unmeasured requests first (fill prompt caches)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on the whole run")
	flag.Parse()
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res)
	} else {
		fmt.Println(res)
	}
	if res.Errors > 0 {
		fmt.Fprintln(os.Stderr, "loadgen: first error:", res.FirstError)
		os.Exit(1)
	}
}
