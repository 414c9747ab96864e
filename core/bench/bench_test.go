package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func run(t *testing.T, cfg Config) Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func within(t *testing.T, what string, got, lo, hi float64) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %.2f, want %.2f..%.2f", what, got, lo, hi)
	}
}

// The percentiles are those of the injected delays: TTFT 40, 80, 120, 160
// and 200 ms, four requests each; 10 ms between tokens. The tolerance
// allows for a -race build on two busy cores: a measurement is never
// shorter than the delay (less a little for a late chunk before a gap), and
// may be longer by scheduling (CI runs many test binaries at once, so the
// upper bounds leave 150 ms or more; the lower ones carry the check).
func TestLatenciesMatchInjectedDelays(t *testing.T) {
	f := &fakeOpenAI{ttft: func(n int) time.Duration { return time.Duration(n%5+1) * 40 * time.Millisecond }, itl: 10 * time.Millisecond}
	cfg := fakeConfig(f.start(t))
	cfg.Concurrency, cfg.Requests = []int{4}, 20
	rep := run(t, cfg)
	st := rep.Steps[0]
	if st.Requests != 20 || st.OK != 20 || st.OutputTokens != 160 || st.StreamTokens != 160 || st.UsageOutputTokens != 160 ||
		st.UsageMismatches != 0 || st.TTFT.N != 20 || st.ITL.N != 140 || st.E2E.N != 20 {
		t.Fatalf("step = %+v", st)
	}
	within(t, "TTFT p50", st.TTFT.P50, 119, 300)
	within(t, "TTFT p90", st.TTFT.P90, 199, 400)
	within(t, "TTFT max", st.TTFT.Max, 199, 450)
	within(t, "TTFT mean", st.TTFT.Mean, 119, 300)
	within(t, "ITL p50", st.ITL.P50, 8, 60)
	within(t, "E2E p50", st.E2E.P50, 189, 450)
	if st.ITL.P50 > st.ITL.P99 || st.TTFT.P50 > st.TTFT.P95 || st.TTFT.P95 > st.TTFT.P99 || st.TTFT.P99 > st.TTFT.Max {
		t.Errorf("percentiles out of order: %+v %+v", st.TTFT, st.ITL)
	}
	within(t, "output tokens/s", st.OutputTokPerS, 160/st.DurationS*0.999, 160/st.DurationS*1.001)
	if st.CachedTokens != 3 || st.PromptTokens == 0 {
		t.Errorf("prompt %v cached %v", st.PromptTokens, st.CachedTokens)
	}
	for _, r := range f.requests() {
		if !r.IgnoreEOS || r.Seed != 7 || r.Model != "m" || r.MaxTokens != 8 {
			t.Fatalf("request %+v", r)
		}
	}
}

// Prompts are sized through the calibration: the fake counts 5 tokens a
// request and 2 a word.
func TestCalibrationSizesPrompts(t *testing.T) {
	f := &fakeOpenAI{}
	cfg := fakeConfig(f.start(t))
	cfg.PromptTokens = Lengths{Kind: "fixed", A: 101}
	rep := run(t, cfg)
	wl := rep.Workload
	if !wl.Calibrated || wl.TokensPerWord != 2 || wl.PromptOverhead != 5 {
		t.Fatalf("workload %+v", wl)
	}
	within(t, "prompt tokens", rep.Steps[0].PromptTokens, 99, 103)
}

// A goodput SLO counts the requests that met it.
func TestGoodput(t *testing.T) {
	f := &fakeOpenAI{ttft: func(n int) time.Duration {
		if n%2 == 0 {
			return 0
		}
		return 300 * time.Millisecond
	}}
	cfg := fakeConfig(f.start(t))
	cfg.Concurrency, cfg.Requests, cfg.SLO = []int{1}, 4, SLO{TTFTMs: 150}
	st := run(t, cfg).Steps[0]
	if st.GoodFraction != 0.5 || st.Goodput <= 0 || st.Goodput >= st.ReqPerS {
		t.Errorf("good fraction %v goodput %v req/s %v", st.GoodFraction, st.Goodput, st.ReqPerS)
	}
}

// A server that holds back text sends several tokens in one chunk: the
// mismatch is counted, the usage figure (borne out by the stream) counts.
func TestMergedChunksCountUsage(t *testing.T) {
	f := &fakeOpenAI{perChunk: 2}
	cfg := fakeConfig(f.start(t))
	st := run(t, cfg).Steps[0]
	if st.OK != 4 || st.StreamTokens != 16 || st.UsageOutputTokens != 32 || st.OutputTokens != 32 || st.UsageMismatches != 4 || st.ITL.N != 12 || st.Short != 0 {
		t.Fatalf("step %+v", st)
	}
}

// Requests that generated fewer tokens than asked are counted and named.
func TestShortAnswersNoted(t *testing.T) {
	f := &fakeOpenAI{stopAfter: 3}
	rep := run(t, fakeConfig(f.start(t)))
	if st := rep.Steps[0]; st.OK != 4 || st.Short != 4 || st.OutputTokens != 12 || st.UsageMismatches != 0 {
		t.Fatalf("step %+v", st)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rep); err != nil || !strings.Contains(b.String(), "4 requests generated fewer tokens than asked (the server did not honor ignore_eos)") {
		t.Errorf("table (%v):\n%s", err, b.String())
	}
}

func TestErrorsByCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *fakeOpenAI
		want map[string]int
		ok   int
	}{
		{"401 OpenAI body", &fakeOpenAI{fail: func(int) (int, string) {
			return 401, `{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}`
		}}, map[string]int{"401 invalid_api_key": 4}, 0},
		{"429 llorch body every other", &fakeOpenAI{fail: func(n int) (int, string) {
			if n%2 == 1 {
				return 429, `{"error":{"code":"QUEUE_FULL","message":"queue full","retriable":true}}`
			}
			return 0, ""
		}}, map[string]int{"429 QUEUE_FULL": 2}, 2},
		{"null code names the type", &fakeOpenAI{fail: func(int) (int, string) {
			return 400, `{"error":{"message":"x","type":"invalid_request_error","code":null}}`
		}}, map[string]int{"400 invalid_request_error": 4}, 0},
		{"vLLM top level", &fakeOpenAI{fail: func(int) (int, string) {
			return 400, `{"object":"error","message":"x","type":"BadRequestError","code":400}`
		}}, map[string]int{"400 400": 4}, 0},
		{"no body", &fakeOpenAI{fail: func(int) (int, string) { return 503, "" }}, map[string]int{"503": 4}, 0},
		{"in the stream", &fakeOpenAI{streamErr: `{"error":{"message":"boom","type":"server_error","code":"DECODE_FAILED"}}`},
			map[string]int{"200 DECODE_FAILED": 4}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := run(t, fakeConfig(tc.f.start(t))).Steps[0]
			if st.Requests != 4 || st.OK != tc.ok || fmt.Sprint(st.Errors) != fmt.Sprint(tc.want) {
				t.Errorf("requests %d ok %d errors %v, want ok %d errors %v", st.Requests, st.OK, st.Errors, tc.ok, tc.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		// Port 1 (tcpmux) is privileged and unused: nothing answers there.
		rep := run(t, fakeConfig("http://127.0.0.1:1"))
		st := rep.Steps[0]
		if st.OK != 0 || st.Errors["0 connect"] != 4 || rep.Workload.Calibrated || rep.Workload.TokensPerWord != DefaultTokensPerWord {
			t.Errorf("step %+v workload %+v", st, rep.Workload)
		}
	})
}

// The run's timeout cuts requests in flight: they count as "0 timeout".
func TestTimeout(t *testing.T) {
	block := make(chan struct{})
	f := &fakeOpenAI{ttft: func(int) time.Duration { <-block; return 0 }}
	cfg := fakeConfig(f.start(t))
	t.Cleanup(func() { close(block) }) // before the server closes
	cfg.Timeout = 500 * time.Millisecond
	st := run(t, cfg).Steps[0]
	if st.OK != 0 || st.Errors["0 timeout"] != 2 {
		t.Errorf("step %+v", st)
	}
}

// One seed, the very same requests (lengths and text); another seed,
// others.
func TestSameSeedSameRequests(t *testing.T) {
	bodies := func(seed uint64) []string {
		f := &fakeOpenAI{}
		cfg := fakeConfig(f.start(t))
		cfg.Seed, cfg.Concurrency, cfg.Requests, cfg.SharedPrefix = seed, []int{3}, 9, 10
		cfg.PromptTokens, cfg.GenTokens = Lengths{Kind: "uniform", A: 20, B: 80}, Lengths{Kind: "normal", A: 6, B: 3}
		run(t, cfg)
		var out []string
		for _, r := range f.requests() {
			out = append(out, fmt.Sprintf("%d %s", r.MaxTokens, r.Prompt))
		}
		slices.Sort(out)
		return out
	}
	a, b, c := bodies(3), bodies(3), bodies(4)
	if !slices.Equal(a, b) {
		t.Errorf("seed 3 twice:\n%q\n%q", a, b)
	}
	if slices.Equal(a, c) {
		t.Error("seeds 3 and 4 sent the same requests")
	}
	// The shared prefix heads every prompt; the rest differs from its
	// first word.
	prefix := strings.Fields(strings.SplitN(a[0], " ", 2)[1])[:5]
	first := map[string]bool{}
	for _, s := range a {
		w := strings.Fields(strings.SplitN(s, " ", 2)[1])
		if !slices.Equal(w[:5], prefix) {
			t.Fatalf("%q does not start with the shared prefix %q", s, prefix)
		}
		first[w[5]] = true
	}
	if len(first) != len(a) {
		t.Errorf("unique parts share first words: %v", first)
	}
}

func TestLengths(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"256", "256"}, {" 1 ", "1"}, {"uniform:128:512", "uniform:128:512"}, {"uniform:5:5", "uniform:5:5"},
		{"normal:256:64", "normal:256:64"}, {"normal:10:0", "normal:10:0"},
		{"0", "error"}, {"-3", "error"}, {"1000001", "error"}, {"x", "error"}, {"uniform:9:8", "error"},
		{"uniform:1", "error"}, {"normal:0:5", "error"}, {"normal:5:-1", "error"}, {"poisson:3:4", "error"}, {"", "error"},
	} {
		l, err := ParseLengths(tc.in)
		got := l.String()
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("ParseLengths(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
	draws := func(l Lengths, seed uint64) []int {
		rng := rand.New(rand.NewPCG(seed, 1))
		out := make([]int, 2000)
		for i := range out {
			out[i] = l.Draw(rng)
		}
		return out
	}
	u := Lengths{Kind: "uniform", A: 10, B: 20}
	if !slices.Equal(draws(u, 1), draws(u, 1)) || slices.Equal(draws(u, 1), draws(u, 2)) {
		t.Error("draws are not made from the seed alone")
	}
	if d := draws(u, 1); slices.Min(d) != 10 || slices.Max(d) != 20 {
		t.Errorf("uniform:10:20 drew %d..%d", slices.Min(d), slices.Max(d))
	}
	n := Lengths{Kind: "normal", A: 100, B: 20}
	d := draws(n, 1)
	mean := 0.0
	for _, v := range d {
		mean += float64(v) / float64(len(d))
	}
	within(t, "normal:100:20 mean", mean, 97, 103)
	if d := draws(Lengths{Kind: "normal", A: 2, B: 50}, 1); slices.Min(d) != 1 {
		t.Errorf("normal:2:50 is not clamped to 1: min %d", slices.Min(d))
	}
}

func TestArrivalsArePoissonAndSeeded(t *testing.T) {
	take := func(seed uint64, step int) []time.Duration {
		next := arrivals(seed, step, 50)
		out := make([]time.Duration, 5000)
		for i := range out {
			out[i] = next()
		}
		return out
	}
	a := take(1, 0)
	if !slices.Equal(a, take(1, 0)) || slices.Equal(a, take(2, 0)) || slices.Equal(a, take(1, 1)) {
		t.Fatal("arrivals are not made from (seed, step) alone")
	}
	// 5000 arrivals at 50/s take about 100 s; the gaps' coefficient of
	// variation is about 1 (exponential).
	within(t, "last arrival (s)", a[len(a)-1].Seconds(), 95, 105)
	var sum, sq float64
	prev := time.Duration(0)
	for _, at := range a {
		g := (at - prev).Seconds()
		sum, sq, prev = sum+g, sq+g*g, at
	}
	mean := sum / float64(len(a))
	within(t, "gap CV", math.Sqrt(sq/float64(len(a))-mean*mean)/mean, 0.9, 1.1)
}

func TestOpenLoop(t *testing.T) {
	f := &fakeOpenAI{}
	cfg := fakeConfig(f.start(t))
	cfg.Concurrency, cfg.Rates, cfg.Requests = nil, []float64{200}, 12
	rep := run(t, cfg)
	if st := rep.Steps[0]; st.Rate != 200 || st.Concurrency != 0 || st.Requests != 12 || st.OK != 12 {
		t.Errorf("step %+v", st)
	}
	// Beyond MaxInFlight an arrival is not sent.
	block := make(chan struct{})
	f = &fakeOpenAI{ttft: func(int) time.Duration { <-block; return 0 }}
	cfg = fakeConfig(f.start(t))
	t.Cleanup(func() { close(block) }) // before the server closes
	cfg.Concurrency, cfg.Rates, cfg.Requests, cfg.MaxInFlight, cfg.Timeout = nil, []float64{1000}, 10, 2, 2*time.Second
	st := run(t, cfg).Steps[0]
	if st.Requests != 10 || st.Errors["0 inflight-limit"] != 8 || st.Errors["0 timeout"] != 2 {
		t.Errorf("step %+v", st)
	}
}

func TestPercentile(t *testing.T) {
	d := dist([]float64{5, 1, 4, 2, 3})
	if d != (Dist{N: 5, Mean: 3, P50: 3, P90: 4.6, P95: 4.8, P99: 4.96, Max: 5}) {
		t.Errorf("dist = %+v", d)
	}
	if d := dist([]float64{7}); d.P50 != 7 || d.P99 != 7 || d.Max != 7 {
		t.Errorf("dist of one = %+v", d)
	}
	if d := dist(nil); d != (Dist{}) {
		t.Errorf("dist of none = %+v", d)
	}
}

// A replayed trace keeps its gaps (at its speed) and its lengths, and
// sends a recorded prompt as it is.
func TestTraceReplay(t *testing.T) {
	recs := []api.TraceRecord{
		{ArrivalMs: 1_000_600, PromptTokens: 30, OutputTokens: 3, Prompt: "hello trace"},
		{ArrivalMs: 1_000_000, PromptTokens: 40, OutputTokens: 5},
		{ArrivalMs: 1_000_200, PromptTokens: 20, MaxTokens: 7},
	}
	var buf bytes.Buffer
	for _, r := range recs {
		line, _ := json.Marshal(r)
		buf.Write(append(line, '\n', '\n'))
	}
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	read, err := ReadTrace(fh)
	fh.Close()
	if err != nil || len(read) != 3 || read[0].ArrivalMs != 1_000_000 || read[2].Prompt != "hello trace" {
		t.Fatalf("ReadTrace: %v %+v", err, read)
	}
	f := &fakeOpenAI{}
	cfg := fakeConfig(f.start(t))
	cfg.Concurrency, cfg.Requests, cfg.Trace, cfg.TraceName, cfg.TraceSpeed = nil, 0, read, path, 2
	rep := run(t, cfg)
	if st := rep.Steps[0]; st.OK != 3 || st.Concurrency != 0 || st.Rate != 0 || rep.Workload.Trace != path || rep.Workload.TraceSpeed != 2 {
		t.Fatalf("report %+v", rep)
	}
	got := f.requests()
	if len(got) != 3 || got[0].MaxTokens != 5 || got[1].MaxTokens != 7 || got[2].MaxTokens != 3 || got[2].Prompt != "hello trace" {
		t.Fatalf("requests %+v", got)
	}
	// 200 and 600 ms of trace at speed 2: 100 and 300 ms.
	within(t, "second arrival (ms)", ms(got[1].At.Sub(got[0].At)), 90, 400)
	within(t, "third arrival (ms)", ms(got[2].At.Sub(got[0].At)), 290, 600)
	// Their generated prompts have the recorded lengths (2 tokens a word,
	// 5 a request).
	within(t, "first prompt words", float64(len(strings.Fields(got[0].Prompt))), 17, 18)

	for _, bad := range []string{`{"arrival_ms":-1}`, `{"prompt_tokens":2000000}`, `{"arrival_ms":"x"}`, `nope`} {
		if _, err := ReadTrace(strings.NewReader("{}\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ReadTrace(%s) = %v", bad, err)
		}
	}
}

// Each turn of a session sends the conversation so far: the shared system
// prompt, the earlier user messages and the answers streamed.
func TestSessionsGrow(t *testing.T) {
	f := &fakeOpenAI{}
	cfg := fakeConfig(f.start(t))
	cfg.Endpoint, cfg.Sessions, cfg.Turns, cfg.SharedPrefix, cfg.Concurrency = EndpointChat, 3, 3, 10, []int{2}
	rep := run(t, cfg)
	if st := rep.Steps[0]; st.Requests != 9 || st.OK != 9 || rep.Workload.Sessions != 3 || rep.API != "openai-chat" {
		t.Fatalf("report %+v", rep)
	}
	byLen := map[int]int{}
	f.mu.Lock()
	answers := f.answers
	f.mu.Unlock()
	firsts := map[string]bool{}
	for _, r := range f.requests() {
		byLen[len(r.Messages)]++
		if r.Messages[0].Role != "system" || r.Messages[len(r.Messages)-1].Role != "user" {
			t.Fatalf("messages %+v", r.Messages)
		}
		if len(r.Messages) == 2 {
			firsts[r.Messages[1].Content] = true
			continue
		}
		if !firsts[r.Messages[1].Content] {
			t.Errorf("a later turn does not start with a first turn's message: %+v", r.Messages)
		}
		for i := 2; i < len(r.Messages)-1; i += 2 {
			if m := r.Messages[i]; m.Role != "assistant" || !answers[m.Content] {
				t.Errorf("message %d is not an answer streamed: %+v", i, m)
			}
		}
	}
	if fmt.Sprint(byLen) != "map[2:3 4:3 6:3]" {
		t.Errorf("requests by message count: %v", byLen)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"bad url", func(c *Config) { c.URL = "ftp://x" }, "url"},
		{"api", func(c *Config) { c.API = "grpc" }, "api"},
		{"endpoint", func(c *Config) { c.Endpoint = "embeddings" }, "endpoint"},
		{"prefix too long", func(c *Config) { c.SharedPrefix = 40 }, "shared prefix"},
		{"sessions need chat", func(c *Config) { c.Sessions, c.Turns = 2, 2 }, "chat"},
		{"concurrency", func(c *Config) { c.Concurrency = []int{0} }, "concurrency"},
		{"huge concurrency", func(c *Config) { c.Concurrency = []int{1 << 20} }, "concurrency"},
		{"both loops", func(c *Config) { c.Rates = []float64{2} }, "not both"},
		{"rate", func(c *Config) { c.Concurrency, c.Rates = nil, []float64{math.Inf(1)} }, "rate"},
		{"requests", func(c *Config) { c.Requests = -1 }, "requests"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"slo", func(c *Config) { c.SLO.TTFTMs = -1 }, "SLO"},
		{"empty trace", func(c *Config) { c.Concurrency, c.Trace, c.TraceSpeed = nil, []api.TraceRecord{}, 1 }, "no records"},
	} {
		c := fakeConfig("http://127.0.0.1:1")
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	c := fakeConfig("127.0.0.1:1")
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"0", "1,x", "-1", "5000"} {
		if _, err := ParseConcurrency(bad); err == nil {
			t.Errorf("ParseConcurrency(%q) accepted", bad)
		}
	}
	if r, err := ParseRates("2/s, 30/m,0.5"); err != nil || !slices.Equal(r, []float64{2, 0.5, 0.5}) {
		t.Errorf("ParseRates = %v %v", r, err)
	}
	for _, bad := range []string{"0", "-2/s", "x", "NaN", "1e9"} {
		if _, err := ParseRates(bad); err == nil {
			t.Errorf("ParseRates(%q) accepted", bad)
		}
	}
}

func TestErrorKey(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		key    string
	}{
		{401, `{"error":{"code":"invalid_api_key","message":"m"}}`, "401 invalid_api_key"},
		{404, `{"error":"model 'x' not found"}`, "404"},
		{500, `<html>`, "500"},
		{429, `{"error":{"code":"bad code\nwith spaces"}}`, "429 bad_code_with_spaces"},
	} {
		if key, _ := errorKey(tc.status, []byte(tc.body)); key != tc.key {
			t.Errorf("errorKey(%d, %s) = %q, want %q", tc.status, tc.body, key, tc.key)
		}
	}
}

// The table names the warm-up and the errors.
func TestWriteTable(t *testing.T) {
	f := &fakeOpenAI{fail: func(n int) (int, string) {
		if n == 1 {
			return 429, `{"error":{"code":"rate_limited"}}`
		}
		return 0, ""
	}}
	cfg := fakeConfig(f.start(t))
	cfg.Warmup, cfg.SLO = 1, SLO{TTFTMs: 500}
	rep := run(t, cfg)
	var b bytes.Buffer
	if err := WriteTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"warm-up: 1 requests", "K=2", `error "429 rate_limited" ×1`, "TTFT ≤ 500 ms", "2.00 tokens/word"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if rep.Warmup != 1 || rep.Steps[0].Requests != 4 || len(f.requests()) != 5 {
		t.Errorf("warm-up %d, requests %d, sent %d", rep.Warmup, rep.Steps[0].Requests, len(f.requests()))
	}
}

var _ http.Handler = (*fakeOpenAI)(nil)

// wordTokens counts prompt tokens as a tokenizer that splits at spaces
// does, with words of different lengths in tokens: a word costs 1 to 3
// tokens by its length, the first word of a segment (the prompt, or a
// message) one more when its length is even, a chat message 4 and a
// request 3 (a template, a BOS).
func wordTokens(chat bool) func(segments []string) int {
	return func(segments []string) int {
		n := 3
		for _, seg := range segments {
			if chat {
				n += 4
			}
			for i, w := range strings.Fields(seg) {
				n += 1 + len(w)%3
				if i == 0 && len(w)%2 == 0 {
					n++
				}
			}
		}
		return n
	}
}

// Prompts come out at the asked length on average, and each close to it,
// where words differ in tokens (a short calibration text's tokens per word
// is not a long one's) and with a shared prefix, on both endpoints.
func TestPromptSizesWithUnevenWords(t *testing.T) {
	for _, tc := range []struct {
		name           string
		endpoint       string
		prompt, shared int
	}{
		{"completions", EndpointCompletions, 250, 0},
		{"completions shared", EndpointCompletions, 100, 60},
		{"chat shared", EndpointChat, 100, 60},
		{"chat long", EndpointChat, 250, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := wordTokens(tc.endpoint == EndpointChat)
			f := &fakeOpenAI{promptTokens: count}
			cfg := fakeConfig(f.start(t))
			cfg.Endpoint, cfg.SharedPrefix, cfg.Requests, cfg.Concurrency = tc.endpoint, tc.shared, 16, []int{4}
			cfg.PromptTokens = Lengths{Kind: "fixed", A: tc.prompt}
			rep := run(t, cfg)
			if !rep.Workload.Calibrated {
				t.Fatalf("workload %+v", rep.Workload)
			}
			want := float64(tc.prompt)
			within(t, "mean prompt tokens", rep.Steps[0].PromptTokens, want*0.97, want*1.03)
			for _, r := range f.requests() {
				segs := []string{r.Prompt}
				if r.Messages != nil {
					segs = nil
					for _, m := range r.Messages {
						segs = append(segs, m.Content)
					}
				}
				within(t, "a request's prompt tokens", float64(count(segs)), want*0.93, want*1.07)
			}
		})
	}
}

// With a prefix per session every conversation has its own system prompt,
// and OnRequest sees every measured turn with its session and turn.
func TestSessionPrefixesAndResults(t *testing.T) {
	f := &fakeOpenAI{}
	cfg := fakeConfig(f.start(t))
	cfg.Endpoint, cfg.Sessions, cfg.Turns, cfg.SharedPrefix, cfg.Concurrency = EndpointChat, 3, 2, 10, []int{2}
	cfg.PrefixPerSession, cfg.Warmup = true, 2
	var results []Result
	cfg.OnRequest = func(r Result) { results = append(results, r) }
	rep := run(t, cfg)
	if st := rep.Steps[0]; st.OK != 6 {
		t.Fatalf("step %+v", st)
	}
	systems := map[string]bool{}
	for _, r := range f.requests()[2:] { // after the warm-up's
		if r.Messages[0].Role == "system" {
			systems[r.Messages[0].Content] = true
		}
	}
	if len(systems) != 3 {
		t.Errorf("%d system prompts for 3 sessions: %v", len(systems), systems)
	}
	if len(results) != 6 {
		t.Fatalf("%d results, want 6 (warm-up left out)", len(results))
	}
	seen := map[[2]int]bool{}
	var ttft []float64
	for _, r := range results {
		if r.Err != "" || r.Step != 0 || r.OutputTokens != 8 || !r.HasPrompt || r.PromptTokens == 0 || r.Text == "" || r.TTFT <= 0 || r.E2E < r.TTFT {
			t.Errorf("result %+v", r)
		}
		seen[[2]int{r.Session, r.Turn}] = true
		ttft = append(ttft, ms(r.TTFT))
	}
	if len(seen) != 6 {
		t.Errorf("sessions and turns %v", seen)
	}
	if d := Distribution(ttft); d.N != 6 || d.P50 > d.P95 || d.Max < d.P95 {
		t.Errorf("distribution %+v", d)
	}
}
