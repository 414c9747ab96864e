package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/workerclient"
)

// fakeHTTPWorker streams n tokens per request as fast as it can: the orchestrator
// relay is the thing measured.
func fakeHTTPWorker(n int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/execute" {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"status":"ready"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		bw := bufio.NewWriterSize(w, 64<<10)
		sw := sse.NewWriter(bw)
		_ = sw.JSON(api.EventStarted, "", &api.Started{JobID: "j", Model: "fake"})
		tok := api.Token{T: "tok"}
		for i := range n {
			tok.I = i
			_ = sw.JSON(api.EventToken, "", &tok)
		}
		_ = sw.JSON(api.EventEnd, "", &api.End{TokensOut: n, StopReason: api.StopMaxTokens})
		_ = bw.Flush()
	}))
}

// instantWorker is a fake worker that answers at once and flushes every
// event, as a real one does: POST /execute streams started, n tokens and end;
// POST /v1/completions streams n OpenAI chunks, a last one and [DONE]. It is
// the baseline a relay's added time is measured against.
func instantWorker(n int) *httptest.Server {
	chunk := []byte(`{"id":"cmpl-x","object":"text_completion","created":1,"model":"fake","system_fingerprint":"f","choices":[{"text":"tok","index":0,"logprobs":null,"finish_reason":null}]}`)
	last := []byte(`{"id":"cmpl-x","object":"text_completion","created":1,"model":"fake","system_fingerprint":"f","choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}]}`)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/execute":
			w.Header().Set("Content-Type", "text/event-stream")
			sw := sse.NewWriter(w)
			_ = sw.JSON(api.EventStarted, "", &api.Started{JobID: "j", Model: "fake", MaxTokens: n})
			tok := api.Token{T: "tok"}
			for i := range n {
				tok.I, tok.ID = i, int32(i)
				_ = sw.JSON(api.EventToken, "", &tok)
			}
			_ = sw.JSON(api.EventEnd, "", &api.End{TokensOut: n, StopReason: api.StopMaxTokens})
		case "/v1/completions":
			w.Header().Set("Content-Type", "text/event-stream")
			sw := sse.NewWriter(w)
			for range n {
				_ = sw.Event(sse.Event{Data: chunk})
			}
			_ = sw.Event(sse.Event{Data: last})
			_ = sw.Event(sse.Event{Data: []byte("[DONE]")})
		default:
			_, _ = io.WriteString(w, `{"status":"ready"}`)
		}
	}))
}

// streamOnce posts body to url as a streamed request and reads the stream
// to its end: the time to the first token and to the end, and the tokens.
// A native stream's end event's timing goes to tm, when tm is not nil.
func streamOnce(b *testing.B, c *http.Client, url, body string, tm *api.Timing) (ttft, total time.Duration, tokens int) {
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		b.Fatalf("%s: %d %s", url, resp.StatusCode, data)
	}
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			b.Fatalf("%s: stream ended early: %v", url, err)
		}
		switch {
		case ev.Event == api.EventToken || (ev.Event == "" && bytes.Contains(ev.Data, []byte(`"finish_reason":null`))):
			if tokens == 0 {
				ttft = time.Since(start)
			}
			tokens++
		case ev.Event == api.EventEnd || ev.Event == api.EventError || string(ev.Data) == "[DONE]":
			total = time.Since(start)
			if tm != nil && ev.Event == api.EventEnd {
				var end api.End
				if json.Unmarshal(ev.Data, &end) == nil && end.Timing != nil {
					*tm = *end.Timing
				}
			}
			return ttft, total, tokens
		}
	}
}

// BenchmarkAddedStream measures what the orchestrator adds to one 64-token
// stream, native (/v2/tasks) and OpenAI (/v1/completions): the same stream
// read straight from a worker that answers at once (instantWorker) and
// through the orchestrator, interleaved (the order alternating), one
// request at a time. It reports the p50 of each and the added time to the
// end of the stream and to the first token. make bench-overhead prints it.
func BenchmarkAddedStream(b *testing.B) {
	const tokens = 64
	fw := instantWorker(tokens)
	defer fw.Close()
	o := startOrch(b, Config{})
	register(b, o, "fake", fw.URL, "fake", 4)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, door := range []struct{ name, direct, via, body string }{
		{"native", "/execute", "/v2/tasks", `{"model":"fake","prompt":"x","max_tokens":64}`},
		{"openai", "/v1/completions", "/v1/completions", `{"model":"fake","prompt":"x","max_tokens":64,"stream":true}`},
	} {
		b.Run(door.name, func(b *testing.B) {
			var direct, via, directTTFT, viaTTFT, queue, worker []time.Duration
			one := func(i int) {
				for k := range 2 {
					if (i+k)%2 == 0 {
						var tm api.Timing
						ttft, total, n := streamOnce(b, c, o.URL+door.via, door.body, &tm)
						queue = append(queue, time.Duration(tm.QueueMs*1e6))
						worker = append(worker, time.Duration(tm.WorkerTTFTMs*1e6))
						if n != tokens {
							b.Fatalf("via: %d tokens, want %d", n, tokens)
						}
						via, viaTTFT = append(via, total), append(viaTTFT, ttft)
					} else {
						ttft, total, n := streamOnce(b, c, fw.URL+door.direct, door.body, nil)
						if n != tokens {
							b.Fatalf("direct: %d tokens, want %d", n, tokens)
						}
						direct, directTTFT = append(direct, total), append(directTTFT, ttft)
					}
				}
			}
			for i := range 50 { // warm both paths
				one(i)
			}
			direct, via, directTTFT, viaTTFT, queue, worker = nil, nil, nil, nil, nil, nil
			b.ResetTimer()
			i := 0
			for b.Loop() {
				one(i)
				i++
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
			pd, pv := pct(direct), pct(via)
			b.ReportMetric(ms(pd[0]), "direct-p50-ms")
			b.ReportMetric(ms(pv[0]), "via-p50-ms")
			b.ReportMetric(ms(pv[0]-pd[0]), "added-p50-ms")
			b.ReportMetric(ms(pct(viaTTFT)[0]-pct(directTTFT)[0]), "added-ttft-p50-ms")
			if door.name == "native" { // the orchestrator's own view (the end event's timing)
				b.ReportMetric(ms(pct(queue)[0]), "queue-p50-ms")
				b.ReportMetric(ms(pct(worker)[0]), "worker-ttft-p50-ms")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

func register(b *testing.B, o *orch, id, url, model string, slots int) {
	b.Helper()
	reg := api.WorkerRegistration{WorkerID: id, URL: url, Model: api.ModelInfo{ID: model}, Slots: slots}
	resp := o.do(b, http.MethodPost, "/v2/workers/register", reg)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("register: %d", resp.StatusCode)
	}
}

// BenchmarkRelay measures tokens per second relayed from one (fake) worker
// stream to one client through the orchestrator.
func BenchmarkRelay(b *testing.B) {
	const tokens = 20000
	fw := fakeHTTPWorker(tokens)
	defer fw.Close()
	o := startOrch(b, Config{})
	register(b, o, "fake", fw.URL, "fake", 4)
	body := `{"model":"fake","prompt":"x","max_tokens":` + strconv.Itoa(tokens) + `}`
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, o.URL+"/v2/tasks", strings.NewReader(body))
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		r := sse.NewReader(resp.Body)
		n := 0
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			if ev.Event == api.EventToken {
				n++
			}
		}
		resp.Body.Close()
		if n != tokens {
			b.Fatalf("relayed %d tokens, want %d", n, tokens)
		}
	}
	b.ReportMetric(float64(b.N*tokens)/time.Since(start).Seconds(), "tokens/s")
}

// BenchmarkAddedTTFT compares time to first token through the orchestrator
// with the same requests sent straight to the same worker (tiny model, one
// token each), alternating, and reports the added p50 and p99.
func BenchmarkAddedTTFT(b *testing.B) {
	o := startOrch(b, Config{})
	w := kit.StartWorker(b, nil, "--backend", "cpu", "--model", kit.Tiny, "--model-id", "tiny",
		"--threads", "1", "--slots", "2", "--worker-id", "w1", "--orchestrator", o.URL, "--heartbeat", "1s")
	deadline := time.Now().Add(60 * time.Second)
	for o.workerState("w1") != api.WorkerHealthy {
		if time.Now().After(deadline) {
			b.Fatal("worker did not register")
		}
		time.Sleep(20 * time.Millisecond)
	}
	direct := workerclient.New(w.URL, "", nil)
	var viaD, directD []time.Duration
	one := func(via bool, i int) time.Duration {
		req := taskReq("tiny", "ttft probe "+strconv.Itoa(i%8), 1, 1)
		start := time.Now()
		if via {
			hreq, _ := http.NewRequest(http.MethodPost, o.URL+"/v2/tasks", strings.NewReader(mustJSON(req)))
			hreq.Header.Set("Accept", "text/event-stream")
			resp, err := http.DefaultClient.Do(hreq)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			r := sse.NewReader(resp.Body)
			for {
				ev, err := r.Next()
				if err != nil {
					b.Fatalf("stream: %v", err)
				}
				if ev.Event == api.EventToken {
					d := time.Since(start)
					_, _ = io.Copy(io.Discard, resp.Body)
					return d
				}
			}
		}
		st, err := direct.Execute(context.Background(), &req.ExecuteRequest)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		for {
			ev, err := st.Next()
			if err != nil {
				b.Fatalf("direct: %v", err)
			}
			if ev.Token != nil {
				d := time.Since(start)
				for !ev.Terminal() {
					if ev, err = st.Next(); err != nil {
						break
					}
				}
				return d
			}
		}
	}
	for i := range 20 { // warm both paths
		one(true, i)
		one(false, i)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		viaD = append(viaD, one(true, i))
		directD = append(directD, one(false, i))
		i++
	}
	b.StopTimer()
	pv, pd := pct(viaD), pct(directD)
	b.ReportMetric(float64(pd[0].Microseconds())/1000, "direct-p50-ms")
	b.ReportMetric(float64(pv[0].Microseconds())/1000, "via-p50-ms")
	b.ReportMetric(float64((pv[0]-pd[0]).Microseconds())/1000, "added-p50-ms")
	b.ReportMetric(float64((pv[1]-pd[1]).Microseconds())/1000, "added-p99-ms")
}

func mustJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(data)
}

func pct(d []time.Duration) [2]time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return [2]time.Duration{s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]}
}

// BenchmarkQueued10k admits 10,000 tasks that cannot run (their model's only
// worker is draining) and reports the heap they take and the process RSS.
// Run it with -benchtime 1x: each iteration's orchestrator lives until the
// benchmark ends, so later iterations' RSS includes the earlier ones.
func BenchmarkQueued10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		o := startOrch(b, Config{QueueCapacity: 10000})
		register(b, o, "w-drained", "http://127.0.0.1:1", "m", 1)
		if _, e := o.reg.drain("w-drained"); e != nil {
			b.Fatal(e)
		}
		runtime.GC()
		debug.FreeOSMemory()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rss0 := rssMB()
		b.StartTimer()
		prompt := strings.Repeat("word ", 100)
		for i := range 10000 {
			req := taskReq("m", prompt+strconv.Itoa(i), 64, 1)
			if _, e := o.submit(context.Background(), req, false); e != nil {
				b.Fatal(e)
			}
		}
		b.StopTimer()
		_ = o.tasks.flush()
		// Twice: the journal's big commit leaves bbolt pages in a sync.Pool,
		// which only the second collection frees. FreeOSMemory returns what
		// is free, so RSS shows the steady state.
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&after)
		if path := os.Getenv("LLORCH_HEAP_PROFILE"); path != "" {
			f, _ := os.Create(path)
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(rssMB(), "rss-MB")
		b.ReportMetric(rssMB()-rss0, "rss-added-MB")
	}
}

func rssMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
