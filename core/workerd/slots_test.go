package workerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

func fourSlots(c *workerd.Config) { c.Slots = 4; c.Ctx = 2048 }

func tokensJSON(r *workerclient.Result) string {
	b, _ := json.Marshal(r.Tokens)
	return string(b)
}

// sampledReq is a request whose output depends on its seed.
func sampledReq(prompt string, n int, seed int64) *api.ExecuteRequest {
	r := req(prompt, n, seed)
	r.Temperature = ptr(0.9)
	r.IgnoreEOS = true
	return r
}

func TestConcurrentStreamsMatchSolo(t *testing.T) {
	w := startWorker(t, fourSlots)
	prompts := []string{"Alpha streams first", "Beta is second here", "Gamma, the third one", "Delta closes the set"}
	// Each prompt alone, one after another.
	solo := make([]string, len(prompts))
	for i, p := range prompts {
		res := collect(t, w.client, sampledReq(p, 40, int64(i+1)))
		if res.End == nil {
			t.Fatalf("solo %d: %v", i, res.Error)
		}
		solo[i] = tokensJSON(res)
	}
	// Fresh worker, so no slot has a cached prefix: all four at once.
	w2 := startWorker(t, fourSlots)
	together := make([]*workerclient.Result, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			res, err := w2.client.Collect(context.Background(), sampledReq(p, 40, int64(i+1)))
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			together[i] = res
		})
	}
	wg.Wait()
	slots := map[int]bool{}
	for i, res := range together {
		if res == nil || res.End == nil {
			t.Fatalf("stream %d incomplete: %+v", i, res)
		}
		if res.End.TokensOut != 40 || len(res.Tokens) != 40 || res.End.StopReason != api.StopMaxTokens {
			t.Errorf("stream %d: %d tokens, end %+v", i, len(res.Tokens), res.End)
		}
		for k, tk := range res.Tokens {
			if tk.I != k || !utf8.ValidString(tk.T) {
				t.Errorf("stream %d token %d = %+v", i, k, tk)
			}
		}
		slots[res.Started.Slot] = true
		if got := tokensJSON(res); got != solo[i] {
			t.Errorf("stream %d beside others differs from alone:\nalone:    %s\ntogether: %s", i, solo[i], got)
		}
	}
	if len(slots) != 4 {
		t.Errorf("4 concurrent streams used slots %v", slots)
	}
	// Batching happened: some decode step carried more than one sequence.
	resp, err := http.Get(w2.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
}

func TestBeyondSlotCount(t *testing.T) {
	w := startWorker(t, fourSlots)
	var streams []*workerclient.Stream
	for i := range 4 {
		st, _ := streamUntil(t, w.client, req(fmt.Sprintf("busy %d", i), 1500, 1), 1)
		streams = append(streams, st)
	}
	defer func() {
		for _, st := range streams {
			st.Close()
		}
	}()
	status, eb, hdr := postRaw(t, w.url+"/execute", `{"prompt":"fifth","max_tokens":2}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeAllSlotsBusy || hdr.Get("Retry-After") == "" || !eb.Error.Retriable {
		t.Errorf("fifth request: %d %+v Retry-After=%q", status, eb.Error, hdr.Get("Retry-After"))
	}
	h, err := w.client.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.SlotsBusy != 4 || h.SlotsTotal != 4 || len(h.Slots) != 4 || h.SlotCtx != 2048 {
		t.Errorf("health = busy %d total %d slots %d ctx %d", h.SlotsBusy, h.SlotsTotal, len(h.Slots), h.SlotCtx)
	}
}

func TestCancelOneOfFour(t *testing.T) {
	w := startWorker(t, fourSlots)
	type out struct {
		res *workerclient.Result
		err error
	}
	results := make([]out, 4)
	started := make(chan string, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			st, err := w.client.Execute(context.Background(), sampledReq(fmt.Sprintf("stream %d of four", i), 300, int64(i)))
			if err != nil {
				results[i].err = err
				started <- ""
				return
			}
			defer st.Close()
			res := &workerclient.Result{}
			for {
				ev, err := st.Next()
				if err != nil {
					results[i] = out{res, err}
					return
				}
				switch {
				case ev.Started != nil:
					res.Started = *ev.Started
				case ev.Token != nil:
					if len(res.Tokens) == 0 {
						started <- res.Started.JobID
					}
					if res.Error != nil {
						results[i] = out{res, fmt.Errorf("token after error")}
						return
					}
					res.Tokens = append(res.Tokens, *ev.Token)
				case ev.End != nil:
					res.End = ev.End
					results[i] = out{res, nil}
					return
				case ev.Error != nil:
					res.Error = ev.Error
					results[i] = out{res, nil}
					return
				}
			}
		})
	}
	var victim string
	for range 4 {
		id := <-started
		if victim == "" {
			victim = id
		}
	}
	if _, err := w.client.Cancel(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	cancelled := 0
	for i, o := range results {
		if o.err != nil {
			t.Fatalf("stream %d: %v", i, o.err)
		}
		if o.res.Started.JobID == victim {
			cancelled++
			if o.res.Error == nil || o.res.Error.Code != api.CodeCancelled {
				t.Errorf("victim ended with %+v %+v", o.res.End, o.res.Error)
			}
			continue
		}
		if o.res.End == nil || o.res.End.TokensOut != 300 || len(o.res.Tokens) != 300 {
			t.Errorf("stream %d not intact: %d tokens, end %+v, err %+v", i, len(o.res.Tokens), o.res.End, o.res.Error)
		}
	}
	if cancelled != 1 {
		t.Errorf("%d streams cancelled", cancelled)
	}
}

func TestPromptCacheReuse(t *testing.T) {
	w := startWorker(t, fourSlots)
	system := strings.Repeat("You are a careful assistant who answers briefly. ", 6)
	chat := func(user string) *api.ExecuteRequest {
		return &api.ExecuteRequest{Messages: []api.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
			MaxTokens: ptr(16), Seed: ptr(int64(5)), Temperature: ptr(0.7)}
	}
	cold := collect(t, w.client, chat("What is a river?"))
	if cold.End == nil || cold.End.CachedTokens != 0 {
		t.Fatalf("cold run: %+v %v", cold.End, cold.Error)
	}
	warm := collect(t, w.client, chat("What is a river?"))
	if warm.End == nil || warm.End.CachedTokens == 0 || warm.Started.CachedTokens != warm.End.CachedTokens {
		t.Fatalf("repeat run reused nothing: %+v", warm.End)
	}
	if warm.End.CachedTokens != warm.End.PromptTokens-1 {
		t.Errorf("repeat run cached %d of %d prompt tokens, want all but the last", warm.End.CachedTokens, warm.End.PromptTokens)
	}
	if tokensJSON(warm) != tokensJSON(cold) {
		t.Errorf("cached run differs from cold run:\ncold: %s\nwarm: %s", tokensJSON(cold), tokensJSON(warm))
	}
	// A different question with the same system prompt reuses the shared prefix.
	other := collect(t, w.client, chat("Name a mountain."))
	if other.End == nil || other.End.CachedTokens < 40 || other.End.CachedTokens >= other.End.PromptTokens {
		t.Errorf("shared system prompt: cached %d of %d", other.End.CachedTokens, other.End.PromptTokens)
	}
	// And it matches what a cold worker produces.
	w2 := startWorker(t, fourSlots)
	if fresh := collect(t, w2.client, chat("Name a mountain.")); tokensJSON(fresh) != tokensJSON(other) {
		t.Errorf("partially cached run differs from cold run")
	}
	resp, err := http.Get(w.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
}

// TestLongPromptDoesNotStallStreams: while one slot prefills a long prompt in
// chunks, another slot's tokens keep flowing (token events interleave).
func TestLongPromptDoesNotStallStreams(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096; c.Batch = 64 })
	a, _ := streamUntil(t, w.client, req("decoding stream", 3000, 1), 1)
	defer a.Close()

	var mu sync.Mutex
	var aTimes []time.Time
	stopA := make(chan struct{})
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		for {
			ev, err := a.Next()
			if err != nil || ev.Terminal() {
				return
			}
			mu.Lock()
			aTimes = append(aTimes, time.Now())
			mu.Unlock()
			select {
			case <-stopA:
				return
			default:
			}
		}
	}()
	long := strings.Repeat("long prompt words fill the context ", 70)
	bStart := time.Now()
	b, err := w.client.Execute(context.Background(), req(long, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var bFirst time.Time
	var prompt int
	for bFirst.IsZero() {
		ev, err := b.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Started != nil {
			prompt = ev.Started.PromptTokens
		}
		if ev.Token != nil {
			bFirst = time.Now()
		}
	}
	close(stopA)
	mu.Lock()
	during := 0
	for _, at := range aTimes {
		if at.After(bStart) && at.Before(bFirst) {
			during++
		}
	}
	mu.Unlock()
	t.Logf("prompt of %d tokens in chunks of 64: %d tokens of the other stream arrived during its prefill (%v)", prompt, during, bFirst.Sub(bStart))
	if prompt < 640 {
		t.Fatalf("prompt only %d tokens", prompt)
	}
	if during < 3 {
		t.Errorf("only %d tokens flowed in the other slot while a %d-token prompt was prefilled", during, prompt)
	}
	a.Close()
	<-aDone
}

// TestPrefixCopiedFromAnotherSlot: a request whose free slot has nothing
// cached starts from the prefix a busy slot holds (KV copied across slots),
// and generates exactly what a cold worker generates.
func TestPrefixCopiedFromAnotherSlot(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096 })
	system := strings.Repeat("Answer in one short sentence, politely. ", 8)
	chat := func(user string, n int) *api.ExecuteRequest {
		return &api.ExecuteRequest{Messages: []api.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
			MaxTokens: ptr(n), Seed: ptr(int64(9)), Temperature: ptr(0.8), IgnoreEOS: true}
	}
	// Slot A learns the system prompt, then stays busy with a long job that shares it.
	collect(t, w.client, chat("first question", 2))
	busy, _ := streamUntil(t, w.client, chat("a long answer please", 3700), 1)
	defer busy.Close()
	// The other slot has nothing cached: the prefix must come from slot A.
	res := collect(t, w.client, chat("What is a lake?", 12))
	if res.End == nil || res.End.CachedTokens < 60 || res.Started.CachedTokens != res.End.CachedTokens {
		t.Fatalf("copied prefix: started %+v end %+v", res.Started, res.End)
	}
	cold := collect(t, startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096 }).client, chat("What is a lake?", 12))
	if tokensJSON(res) != tokensJSON(cold) {
		t.Errorf("copied-prefix run differs from a cold run:\ncold:   %s\ncopied: %s", tokensJSON(cold), tokensJSON(res))
	}
	resp, err := http.Get(w.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "llorch_worker_prompt_cache_copies_total 1") {
		t.Errorf("copy not counted")
	}
}
