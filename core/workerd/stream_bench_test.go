package workerd_test

import (
	"bufio"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/workerd"
)

// BenchmarkStream64 is one streamed 64-token /v1/completions on the tiny
// model per iteration, the client reading to [DONE]: the model's compute is
// negligible, so what it measures is the serving machinery per token (decode
// loop hand-off, sampling, text, chunk conversion, SSE, flushes). Compare
// runs side by side (benchstat); the figures are per token and the median
// time to the first chunk.
func BenchmarkStream64(b *testing.B) {
	w := startWorker(b, func(c *workerd.Config) { c.Slots = 4 })
	const n = 64
	body := `{"model":"tiny","prompt":"Once upon a time there was","max_tokens":64,"temperature":0,"ignore_eos":true,"stream":true}`
	var ttfts []time.Duration
	run := func() {
		t0 := time.Now()
		resp, err := http.Post(w.url+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		chunks := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				if chunks == 0 {
					ttfts = append(ttfts, time.Since(t0))
				}
				chunks++
			}
		}
		if chunks < n {
			b.Fatalf("%d chunks, want at least %d", chunks, n)
		}
	}
	run() // warm: the prompt is cached from here on, as in a loop of the same request
	ttfts = ttfts[:0]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/token")
	slices.Sort(ttfts)
	b.ReportMetric(float64(ttfts[len(ttfts)/2].Microseconds()), "µs-ttft-p50")
}
