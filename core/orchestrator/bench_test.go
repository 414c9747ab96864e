package orchestrator

import (
	"bufio"
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
