package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOpenAI is an OpenAI-compatible server for tests: it streams
// max_tokens chunks with injected delays and reports usage, prompt tokens
// as 5 + 2 per word. Calibration probes (max_tokens 1) get no delay.
type fakeOpenAI struct {
	// ttft is the delay before the first chunk of measured request n
	// (counting from 0, probes left out); itl the delay between chunks.
	ttft func(n int) time.Duration
	itl  time.Duration
	// fail, when set, answers measured request n with a status and body
	// instead (status 0: serve it).
	fail func(n int) (int, string)
	// perChunk tokens go into one chunk (default 1).
	perChunk int
	// stopAfter, when set, ends generations after this many tokens (as an
	// end of generation would).
	stopAfter int
	// streamErr, when set, ends every stream after its first chunk with an
	// error chunk of this body.
	streamErr string
	// promptTokens, when set, counts a request's prompt tokens from its
	// segments (the prompt, or each message's content) instead of 5 + 2 a
	// word.
	promptTokens func(segments []string) int

	mu   sync.Mutex
	n    int
	reqs []fakeRequest
	// answers are the texts streamed, by request.
	answers map[string]bool
}

type fakeRequest struct {
	At        time.Time
	Prompt    string
	Messages  []oaMessage
	MaxTokens int
	IgnoreEOS bool
	Seed      int64
	Model     string
}

func (f *fakeOpenAI) start(t *testing.T) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (f *fakeOpenAI) requests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.reqs...)
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	chat := r.URL.Path == "/v1/chat/completions"
	if !chat && r.URL.Path != "/v1/completions" {
		http.NotFound(w, r)
		return
	}
	var body struct {
		oaRequest
		Prompt string `json:"prompt"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.Stream || !body.StreamOptions.IncludeUsage {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	words := len(strings.Fields(body.Prompt))
	segments := []string{body.Prompt}
	if chat {
		segments = nil
	}
	for _, m := range body.Messages {
		words += len(strings.Fields(m.Content))
		segments = append(segments, m.Content)
	}
	promptTokens := 5 + 2*words
	if f.promptTokens != nil {
		promptTokens = f.promptTokens(segments)
	}
	probe := body.MaxTokens == 1
	f.mu.Lock()
	n := -1
	if !probe {
		n = f.n
		f.n++
		f.reqs = append(f.reqs, fakeRequest{At: at, Prompt: body.Prompt, Messages: body.Messages, MaxTokens: body.MaxTokens,
			IgnoreEOS: body.IgnoreEOS, Seed: body.Seed, Model: body.Model})
	}
	f.mu.Unlock()
	if !probe && f.fail != nil {
		if status, msg := f.fail(n); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, msg)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	if !probe && f.ttft != nil {
		time.Sleep(f.ttft(n))
	}
	per := max(f.perChunk, 1)
	if f.stopAfter > 0 && !probe {
		body.MaxTokens = min(body.MaxTokens, f.stopAfter)
	}
	var answer strings.Builder
	for i := 0; i < body.MaxTokens; i += per {
		if i > 0 && !probe {
			time.Sleep(f.itl)
		}
		text := ""
		for j := i; j < min(i+per, body.MaxTokens); j++ {
			text += fmt.Sprintf("r%dt%d ", n, j)
		}
		answer.WriteString(text)
		var chunk any
		if chat {
			chunk = map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": text}}}}
		} else {
			chunk = map[string]any{"choices": []any{map[string]any{"index": 0, "text": text}}}
		}
		data, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", data)
		fl.Flush()
		if f.streamErr != "" && !probe {
			fmt.Fprintf(w, "data: %s\n\n", f.streamErr)
			return
		}
	}
	f.mu.Lock()
	if f.answers == nil {
		f.answers = map[string]bool{}
	}
	f.answers[answer.String()] = true
	f.mu.Unlock()
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
		promptTokens, body.MaxTokens)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// fakeConfig is a valid run against url that tests tweak.
func fakeConfig(url string) Config {
	return Config{URL: url, API: APIOpenAI, Endpoint: EndpointCompletions, Model: "m",
		PromptTokens: Lengths{Kind: "fixed", A: 40}, GenTokens: Lengths{Kind: "fixed", A: 8},
		Concurrency: []int{2}, Requests: 4, Timeout: time.Minute, IgnoreEOS: true, Seed: 7}
}
