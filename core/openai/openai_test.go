package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// script is what the in-test Backend answers: an error from Submit, or a
// stream that replays events, then ends with after (io.EOF when nil), or
// blocks until the request's context is done.
type script struct {
	submitErr error
	events    []api.Event
	after     error
	block     bool
}

// backend replays scripts. It stands in for the orchestrator or a worker only
// in these translation tests; core/workerd tests the real one.
type backend struct {
	mu        sync.Mutex
	script    script
	got       []openai.Request
	models    []openai.Model
	modelsErr error
	closed    chan struct{} // closed when the first stream is closed
	closeOnce sync.Once
	closes    int // streams closed
	submitCtx context.Context
}

func (b *backend) Submit(ctx context.Context, req *openai.Request) (openai.Stream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, *req)
	b.submitCtx = ctx
	if b.script.submitErr != nil {
		return nil, b.script.submitErr
	}
	return &stream{ctx: ctx, s: b.script, b: b}, nil
}

func (b *backend) Models(context.Context) ([]openai.Model, error) { return b.models, b.modelsErr }

func (b *backend) last(t *testing.T) openai.Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) == 0 {
		t.Fatal("no request reached the backend")
	}
	return b.got[len(b.got)-1]
}

type stream struct {
	ctx context.Context
	s   script
	i   int
	b   *backend
}

func (s *stream) Next() (api.Event, error) {
	if s.i < len(s.s.events) {
		s.i++
		return s.s.events[s.i-1], nil
	}
	if s.s.block {
		<-s.ctx.Done()
		return api.Event{}, s.ctx.Err()
	}
	if s.s.after != nil {
		return api.Event{}, s.s.after
	}
	return api.Event{}, io.EOF
}

func (s *stream) Close() error {
	s.b.mu.Lock()
	s.b.closes++
	s.b.mu.Unlock()
	s.b.closeOnce.Do(func() { close(s.b.closed) })
	return nil
}

func started(model string) api.Event {
	return api.Event{Name: api.EventStarted, Started: &api.Started{JobID: "job-1", Model: model}}
}

func tok(text string, i int) api.Event {
	return api.Event{Name: api.EventToken, Token: &api.Token{T: text, I: i}}
}

func end(reason string, prompt, out, cached int) api.Event {
	return api.Event{Name: api.EventEnd, End: &api.End{StopReason: reason, PromptTokens: prompt, TokensOut: out, CachedTokens: cached}}
}

func errEvent(code string) api.Event {
	return api.Event{Name: api.EventError, Error: &api.Error{Code: code, Message: "it broke", Retriable: true}}
}

var queued = api.Event{Name: api.EventQueued}

// hello is a complete generation: "Hello" in three tokens (one held back).
func hello(reason string) []api.Event {
	return []api.Event{queued, started("served-model"), tok("Hel", 0), tok("", 1), tok("lo", 2), end(reason, 5, 3, 2)}
}

const key = "sk-test"

// server mounts the API as a daemon does: ShapeErrors, then the daemon's auth
// (here one that answers in llorch's own error shape, as the worker's does).
func server(t *testing.T, b *backend) *httptest.Server {
	t.Helper()
	if b.closed == nil {
		b.closed = make(chan struct{})
	}
	e := echo.New()
	auth := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			switch c.Request().Header.Get("Authorization") {
			case "Bearer " + key:
				return next(c)
			case "Bearer echo-error":
				return echo.ErrUnauthorized
			}
			return c.JSON(http.StatusUnauthorized, api.ErrorBody{Error: &api.Error{Code: api.CodeUnauthorized, Message: "missing or wrong bearer token"}})
		}
	}
	openai.Register(e.Group("/v1", openai.ShapeErrors, auth), b, nil)
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, ts *httptest.Server, method, path, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, data}
}

func post(t *testing.T, ts *httptest.Server, path, body string, hdr ...string) response {
	t.Helper()
	return do(t, ts, http.MethodPost, path, body, hdr...)
}

// object decodes a JSON body into a generic map.
func object(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, data)
	}
	return m
}

// chunks splits an SSE body into its data payloads.
func chunks(t *testing.T, r response) []string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q, status %d: %s", ct, r.status, r.body)
	}
	var out []string
	for _, block := range strings.Split(strings.TrimSpace(string(r.body)), "\n\n") {
		data, ok := strings.CutPrefix(block, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("bad SSE block %q", block)
		}
		out = append(out, data)
	}
	return out
}

// errorOf checks an error response's shape and returns its error object.
func errorOf(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	m := object(t, r.body)
	e, ok := m["error"].(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("not an OpenAI error body: %s", r.body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("error has no %q: %s", k, r.body)
		}
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("empty message: %s", r.body)
	}
	return e
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

func TestChatCompletion(t *testing.T) {
	b := &backend{script: script{events: hello(api.StopEOS)}}
	ts := server(t, b)
	before := time.Now().Unix()
	r := post(t, ts, "/v1/chat/completions", chatBody)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got struct {
		ID                string `json:"id"`
		Object            string `json:"object"`
		Created           int64  `json:"created"`
		Model             string `json:"model"`
		SystemFingerprint string `json:"system_fingerprint"`
		Choices           []struct {
			Index   int `json:"index"`
			Message struct {
				Role    string  `json:"role"`
				Content string  `json:"content"`
				Refusal *string `json:"refusal"`
			} `json:"message"`
			Logprobs     any    `json:"logprobs"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens        int `json:"prompt_tokens"`
			CompletionTokens    int `json:"completion_tokens"`
			TotalTokens         int `json:"total_tokens"`
			PromptTokensDetails struct {
				CachedTokens int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.ID, "chatcmpl-") || len(got.ID) < 20 || got.Object != "chat.completion" {
		t.Errorf("id %q object %q", got.ID, got.Object)
	}
	if got.Created < before || got.Created > time.Now().Unix() {
		t.Errorf("created = %d", got.Created)
	}
	if got.Model != "served-model" || !strings.HasPrefix(got.SystemFingerprint, "fp_") {
		t.Errorf("model %q fingerprint %q", got.Model, got.SystemFingerprint)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("choices = %+v", got.Choices)
	}
	c := got.Choices[0]
	if c.Index != 0 || c.Message.Role != "assistant" || c.Message.Content != "Hello" || c.FinishReason != "stop" || c.Logprobs != nil || c.Message.Refusal != nil {
		t.Errorf("choice = %+v", c)
	}
	u := got.Usage
	if u.PromptTokens != 5 || u.CompletionTokens != 3 || u.TotalTokens != 8 || u.PromptTokensDetails.CachedTokens != 2 {
		t.Errorf("usage = %+v", u)
	}
	if req := b.last(t); req.Model != "m" || req.Priority != api.PriorityInteractive {
		t.Errorf("request = %+v", req)
	}
}

func TestRequestTranslation(t *testing.T) {
	b := &backend{script: script{events: hello(api.StopEOS)}}
	ts := server(t, b)
	body := `{"model":"m","messages":[{"role":"developer","content":"sys"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"c"},{"role":"user","content":"d","name":"bob"}],
		"max_tokens":3,"max_completion_tokens":11,"temperature":0.25,"top_p":0.5,"stop":"###","seed":9,"user":"user-7","n":1,"logit_bias":{"42":-100},
		"frequency_penalty":0.1,"presence_penalty":0.2,"logprobs":false,"response_format":{"type":"text"},"store":false,"x_unknown":{"a":[1]}}`
	if r := post(t, ts, "/v1/chat/completions", body, openai.PriorityHeader, "batch"); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	req := b.last(t)
	ex := req.Exec
	want := []api.Message{{Role: "system", Content: "sys"}, {Role: "user", Content: "a\nb"}, {Role: "assistant", Content: "c"}, {Role: "user", Content: "d", Name: "bob"}}
	if fmt.Sprint(ex.Messages) != fmt.Sprint(want) {
		t.Errorf("messages = %+v", ex.Messages)
	}
	if req.Model != "m" || req.Priority != api.PriorityBatch || req.User != "user-7" {
		t.Errorf("request = %+v", req)
	}
	if *ex.MaxTokens != 11 || *ex.Temperature != 0.25 || *ex.TopP != 0.5 || *ex.Seed != 9 || fmt.Sprint(ex.Stop) != "[###]" || ex.LogitBias["42"] != -100 {
		t.Errorf("exec = %+v", ex)
	}
	if ex.Prompt != "" || ex.JobID != "" || ex.TopK != nil || ex.IgnoreEOS {
		t.Errorf("exec has fields OpenAI cannot set: %+v", ex)
	}

	post(t, ts, "/v1/completions", `{"model":"m","prompt":"Once","stop":["a","b"]}`)
	ex = b.last(t).Exec
	if ex.Prompt != "Once" || len(ex.Messages) != 0 || *ex.MaxTokens != 16 || fmt.Sprint(ex.Stop) != "[a b]" {
		t.Errorf("completion exec = %+v", ex)
	}

	// ignore_eos, llama-server's and vLLM's extension, reaches the worker
	// (benchmarks generate every requested token on every server).
	post(t, ts, "/v1/completions", `{"model":"m","prompt":"Once","ignore_eos":true}`)
	if ex = b.last(t).Exec; !ex.IgnoreEOS {
		t.Errorf("ignore_eos not passed on: %+v", ex)
	}
}

func TestChatStream(t *testing.T) {
	for _, usage := range []bool{false, true} {
		t.Run(fmt.Sprintf("include_usage=%v", usage), func(t *testing.T) {
			b := &backend{script: script{events: hello(api.StopMaxTokens)}}
			ts := server(t, b)
			body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
			if usage {
				body = `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
			}
			r := post(t, ts, "/v1/chat/completions", body)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			data := chunks(t, r)
			if data[len(data)-1] != "[DONE]" {
				t.Fatalf("last data = %q", data[len(data)-1])
			}
			data = data[:len(data)-1]
			var id string
			var text strings.Builder
			var finishes []string
			for i, d := range data {
				m := object(t, []byte(d))
				if id == "" {
					id, _ = m["id"].(string)
				}
				if m["id"] != id || m["object"] != "chat.completion.chunk" || m["model"] != "served-model" || m["system_fingerprint"] == "" || m["created"] == nil {
					t.Errorf("chunk %d header: %s", i, d)
				}
				u, hasUsage := m["usage"]
				choices := m["choices"].([]any)
				if usage && i == len(data)-1 { // the usage chunk
					um, _ := u.(map[string]any)
					if len(choices) != 0 || um["prompt_tokens"] != 5.0 || um["completion_tokens"] != 3.0 || um["total_tokens"] != 8.0 {
						t.Errorf("usage chunk: %s", d)
					}
					continue
				}
				if hasUsage != usage || u != nil {
					t.Errorf("chunk %d usage: %s", i, d)
				}
				if len(choices) != 1 {
					t.Fatalf("chunk %d: %s", i, d)
				}
				ch := choices[0].(map[string]any)
				delta := ch["delta"].(map[string]any)
				if i == 0 && (delta["role"] != "assistant" || delta["content"] != "") {
					t.Errorf("first chunk: %s", d)
				}
				if i > 0 && delta["role"] != nil {
					t.Errorf("role after the first chunk: %s", d)
				}
				if c, ok := delta["content"].(string); ok {
					if i > 0 && c == "" {
						t.Errorf("empty content chunk: %s", d)
					}
					text.WriteString(c)
				}
				if f, ok := ch["finish_reason"].(string); ok {
					finishes = append(finishes, f)
					if len(delta) != 0 {
						t.Errorf("finish chunk with a delta: %s", d)
					}
				}
			}
			if text.String() != "Hello" || fmt.Sprint(finishes) != "[length]" {
				t.Errorf("text %q finishes %v", text.String(), finishes)
			}
			if !strings.HasPrefix(id, "chatcmpl-") {
				t.Errorf("id %q", id)
			}
		})
	}
}

func TestCompletions(t *testing.T) {
	b := &backend{script: script{events: hello(api.StopSequence)}}
	ts := server(t, b)
	r := post(t, ts, "/v1/completions", `{"model":"m","prompt":"Say","max_tokens":4}`)
	m := object(t, r.body)
	if r.status != http.StatusOK || m["object"] != "text_completion" || !strings.HasPrefix(m["id"].(string), "cmpl-") {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	ch := m["choices"].([]any)[0].(map[string]any)
	if ch["text"] != "Hello" || ch["finish_reason"] != "stop" || ch["index"] != 0.0 {
		t.Errorf("choice: %s", r.body)
	}
	if u := m["usage"].(map[string]any); u["total_tokens"] != 8.0 {
		t.Errorf("usage: %s", r.body)
	}

	r = post(t, ts, "/v1/completions", `{"model":"m","prompt":["Say"],"stream":true,"stream_options":{"include_usage":true}}`)
	data := chunks(t, r)
	if data[len(data)-1] != "[DONE]" {
		t.Fatalf("no [DONE]: %s", r.body)
	}
	var text strings.Builder
	for _, d := range data[:len(data)-2] {
		m := object(t, []byte(d))
		if m["object"] != "text_completion" {
			t.Errorf("chunk: %s", d)
		}
		ch := m["choices"].([]any)[0].(map[string]any)
		text.WriteString(ch["text"].(string))
	}
	last := object(t, []byte(data[len(data)-3]))["choices"].([]any)[0].(map[string]any)
	if text.String() != "Hello" || last["finish_reason"] != "stop" {
		t.Errorf("text %q last %v", text.String(), last)
	}
	if u := object(t, []byte(data[len(data)-2])); len(u["choices"].([]any)) != 0 || u["usage"].(map[string]any)["completion_tokens"] != 3.0 {
		t.Errorf("usage chunk: %s", data[len(data)-2])
	}
}

func TestFinishReasons(t *testing.T) {
	for stop, want := range map[string]string{api.StopEOS: "stop", api.StopSequence: "stop", api.StopMaxTokens: "length", api.StopContextLimit: "length"} {
		b := &backend{script: script{events: hello(stop)}}
		ts := server(t, b)
		r := post(t, ts, "/v1/chat/completions", chatBody)
		if got := object(t, r.body)["choices"].([]any)[0].(map[string]any)["finish_reason"]; got != want {
			t.Errorf("%s: chat finish_reason = %v, want %s", stop, got, want)
		}
		r = post(t, ts, "/v1/completions", `{"model":"m","prompt":"x","stream":true}`)
		data := chunks(t, r)
		if got := object(t, []byte(data[len(data)-2]))["choices"].([]any)[0].(map[string]any)["finish_reason"]; got != want {
			t.Errorf("%s: streamed finish_reason = %v, want %s", stop, got, want)
		}
	}
}

// TestSubmitErrors walks the whole error table: every api code a Backend may
// return before streaming becomes OpenAI's status, type and code.
func TestSubmitErrors(t *testing.T) {
	for _, tc := range []struct {
		code, typ, oaCode string
		status            int
	}{
		{api.CodeInvalidRequest, "invalid_request_error", "invalid_value", 400},
		{api.CodeContextOverflow, "invalid_request_error", "context_length_exceeded", 400},
		{api.CodeDeadlineUnmet, "invalid_request_error", "deadline_unmet", 400},
		{api.CodeUnauthorized, "authentication_error", "invalid_api_key", 401},
		{api.CodeForbidden, "permission_error", "forbidden", 403},
		{api.CodeNotFound, "invalid_request_error", "not_found", 404},
		{api.CodeModelNotFound, "invalid_request_error", "model_not_found", 404},
		{api.CodeTaskNotFound, "invalid_request_error", "task_not_found", 404},
		{api.CodeWorkerNotFound, "invalid_request_error", "worker_not_found", 404},
		{api.CodeMethodNotAllowed, "invalid_request_error", "method_not_allowed", 405},
		{api.CodeConflict, "invalid_request_error", "conflict", 409},
		{api.CodeBodyTooLarge, "invalid_request_error", "body_too_large", 413},
		{api.CodeQueueFull, "rate_limit_error", "queue_full", 429},
		{api.CodeQueueFullDropped, "rate_limit_error", "queue_full_dropped", 429},
		{api.CodeRateLimited, "rate_limit_error", "rate_limit_exceeded", 429},
		{api.CodeAllSlotsBusy, "server_error", "all_slots_busy", 503},
		{api.CodeLoading, "server_error", "model_loading", 503},
		{api.CodeDraining, "server_error", "draining", 503},
		{api.CodePoolUnavailable, "server_error", "pool_unavailable", 503},
		{api.CodeNoWorkerAvailable, "server_error", "no_worker_available", 503},
		{api.CodeWorkerLost, "server_error", "worker_lost", 502},
		{api.CodeWorkerUnreachable, "server_error", "worker_unreachable", 502},
		{api.CodeUnexpectedResponse, "server_error", "unexpected_response", 502},
		{api.CodeCancelled, "server_error", "cancelled", 500},
		{api.CodeDecodeFailed, "server_error", "decode_failed", 500},
		{api.CodeInternal, "server_error", "internal_error", 500},
		{"SOMETHING_NEW", "server_error", "something_new", 500},
	} {
		t.Run(tc.code, func(t *testing.T) {
			b := &backend{script: script{submitErr: fmt.Errorf("wrapped: %w", &api.Error{Code: tc.code, Message: "no luck", Retriable: tc.status >= 500})}}
			ts := server(t, b)
			for _, body := range []string{chatBody, `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`} {
				e := errorOf(t, post(t, ts, "/v1/chat/completions", body), tc.status)
				if e["type"] != tc.typ || e["code"] != tc.oaCode || e["message"] != "no luck" || e["param"] != nil {
					t.Errorf("error = %v", e)
				}
			}
		})
	}
}

func TestErrorDetails(t *testing.T) {
	t.Run("retry headers", func(t *testing.T) {
		ts := server(t, &backend{script: script{submitErr: &api.Error{Code: api.CodeQueueFull, Message: "queue full", Retriable: true, RetryAfterMs: 1500}}})
		r := post(t, ts, "/v1/chat/completions", chatBody)
		errorOf(t, r, 429)
		if r.header.Get("Retry-After") != "2" || r.header.Get("Retry-After-Ms") != "1500" || r.header.Get("X-Should-Retry") != "true" {
			t.Errorf("headers = %v", r.header)
		}
	})
	t.Run("key limits", func(t *testing.T) {
		for _, tc := range []struct {
			e                    *api.Error
			status               int
			typ, code, param, ra string
		}{
			{&api.Error{Code: api.CodeRateLimited, Limit: api.LimitRequestsPerMinute, Message: "key k: 1 requests per minute; retry in 59.0s", Retriable: true, RetryAfterMs: 59000},
				429, "requests", "rate_limit_exceeded", "", "59"},
			{&api.Error{Code: api.CodeRateLimited, Limit: api.LimitTokensPerMinute, Message: "key k: 10 tokens per minute; retry in 0.2s", Retriable: true, RetryAfterMs: 200},
				429, "tokens", "rate_limit_exceeded", "", "1"},
			{&api.Error{Code: api.CodeRateLimited, Limit: api.LimitMaxQueued, Message: "key k: at most 1 tasks queued", Retriable: true, RetryAfterMs: 1000},
				429, "rate_limit_error", "rate_limit_exceeded", "", "1"},
			{&api.Error{Code: api.CodeForbidden, Limit: api.LimitModels, Message: `key k may not use model "m"`}, 403, "permission_error", "forbidden", "model", ""},
		} {
			ts := server(t, &backend{script: script{submitErr: tc.e}})
			r := post(t, ts, "/v1/chat/completions", chatBody)
			e := errorOf(t, r, tc.status)
			param, _ := e["param"].(string)
			if e["type"] != tc.typ || e["code"] != tc.code || param != tc.param || e["message"] != tc.e.Message || r.header.Get("Retry-After") != tc.ra {
				t.Errorf("%s: error = %v, Retry-After %q", tc.e.Limit, e, r.header.Get("Retry-After"))
			}
		}
	})
	t.Run("no retry for a bad request", func(t *testing.T) {
		ts := server(t, &backend{script: script{submitErr: &api.Error{Code: api.CodeInvalidRequest, Message: "bad"}}})
		r := post(t, ts, "/v1/chat/completions", chatBody)
		if errorOf(t, r, 400); r.header.Get("X-Should-Retry") != "false" || r.header.Get("Retry-After") != "" {
			t.Errorf("headers = %v", r.header)
		}
	})
	for _, tc := range []struct{ field, body, param string }{
		{"max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":9}`, "max_completion_tokens"},
		{"max_tokens", chatBody, "max_tokens"},
		{"prompt", chatBody, "messages"},
		{"messages[2].content", chatBody, "messages.[2].content"},
		{"prompt", `{"model":"m","prompt":"x"}`, "prompt"},
	} {
		t.Run("param "+tc.field+" as "+tc.param, func(t *testing.T) {
			ts := server(t, &backend{script: script{submitErr: &api.Error{Code: api.CodeContextOverflow, Message: "too long",
				Fields: []api.FieldError{{Field: tc.field, Constraint: "x", Message: "at most 3"}}}}})
			path := "/v1/chat/completions"
			if strings.Contains(tc.body, `"prompt"`) {
				path = "/v1/completions"
			}
			if e := errorOf(t, post(t, ts, path, tc.body), 400); e["param"] != tc.param || e["code"] != "context_length_exceeded" {
				t.Errorf("error = %v", e)
			}
		})
	}
	t.Run("internal errors do not leak", func(t *testing.T) {
		ts := server(t, &backend{script: script{submitErr: errors.New("secret path /etc/x failed")}})
		e := errorOf(t, post(t, ts, "/v1/chat/completions", chatBody), 500)
		if e["type"] != "server_error" || strings.Contains(e["message"].(string), "secret") {
			t.Errorf("error = %v", e)
		}
	})
}

func TestStreamErrors(t *testing.T) {
	streamBody := `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`
	t.Run("error before the first chunk is a status", func(t *testing.T) {
		ts := server(t, &backend{script: script{events: []api.Event{queued, errEvent(api.CodeQueueFullDropped)}}})
		if e := errorOf(t, post(t, ts, "/v1/chat/completions", streamBody), 429); e["code"] != "queue_full_dropped" {
			t.Errorf("error = %v", e)
		}
	})
	t.Run("error mid-stream is a chunk", func(t *testing.T) {
		ts := server(t, &backend{script: script{events: []api.Event{started("x"), tok("a", 0), errEvent(api.CodeWorkerLost)}}})
		r := post(t, ts, "/v1/chat/completions", streamBody)
		data := chunks(t, r)
		if r.status != 200 || len(data) != 3 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		e := object(t, []byte(data[2]))["error"].(map[string]any)
		if e["type"] != "server_error" || e["code"] != "worker_lost" || e["message"] != "it broke" {
			t.Errorf("error chunk: %s", data[2])
		}
	})
	t.Run("error in a non-streaming request", func(t *testing.T) {
		ts := server(t, &backend{script: script{events: []api.Event{started("x"), tok("a", 0), errEvent(api.CodeDecodeFailed)}}})
		if e := errorOf(t, post(t, ts, "/v1/chat/completions", chatBody), 500); e["code"] != "decode_failed" {
			t.Errorf("error = %v", e)
		}
	})
	for name, after := range map[string]error{"EOF": nil, "broken": io.ErrUnexpectedEOF} {
		t.Run("stream ends early: "+name, func(t *testing.T) {
			ts := server(t, &backend{script: script{events: []api.Event{started("x"), tok("a", 0)}, after: after}})
			if e := errorOf(t, post(t, ts, "/v1/chat/completions", chatBody), 502); e["code"] != "worker_lost" {
				t.Errorf("error = %v", e)
			}
			data := chunks(t, post(t, ts, "/v1/chat/completions", streamBody))
			if e, _ := object(t, []byte(data[len(data)-1]))["error"].(map[string]any); e["code"] != "worker_lost" {
				t.Errorf("last chunk: %s", data[len(data)-1])
			}
		})
	}
}

func TestClientDisconnectCancels(t *testing.T) {
	for _, tc := range []struct {
		stream bool
		n      int
	}{{true, 1}, {false, 1}, {true, 3}, {false, 3}} {
		stream, n := tc.stream, tc.n
		t.Run(fmt.Sprintf("stream=%v n=%d", stream, n), func(t *testing.T) {
			b := &backend{script: script{events: []api.Event{started("x"), tok("a", 0)}, block: true}}
			ts := server(t, b)
			ctx, cancel := context.WithCancel(context.Background())
			body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":%v,"n":%d}`, stream, n)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			done := make(chan error, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				done <- err
			}()
			// Wait until the backend has the request, then leave.
			for range 500 {
				b.mu.Lock()
				got := len(b.got)
				b.mu.Unlock()
				if got >= n {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case <-b.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("stream not closed after the client left")
			}
			// Every choice's stream is closed (its request cancelled).
			deadline := time.Now().Add(10 * time.Second)
			for {
				b.mu.Lock()
				closes, got := b.closes, len(b.got)
				b.mu.Unlock()
				if got != n {
					t.Fatalf("%d requests reached the backend, want %d", got, n)
				}
				if closes >= n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d streams closed after the client left", closes, n)
				}
				time.Sleep(5 * time.Millisecond)
			}
			b.mu.Lock()
			sctx := b.submitCtx
			b.mu.Unlock()
			if sctx.Err() == nil {
				t.Error("the backend's context is still live")
			}
			<-done
		})
	}
}

func TestModels(t *testing.T) {
	b := &backend{models: []openai.Model{{ID: "tiny", Created: 1700000000, Workers: 3, Ready: 2}, {ID: "org/big", Created: 1700000001, Workers: 1}}}
	ts := server(t, b)
	r := do(t, ts, http.MethodGet, "/v1/models", "")
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
			Llorch  struct {
				Workers int `json:"workers"`
				Ready   int `json:"ready"`
			} `json:"llorch"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if list.Object != "list" || len(list.Data) != 2 {
		t.Fatalf("list = %s", r.body)
	}
	m := list.Data[0]
	if m.ID != "tiny" || m.Object != "model" || m.Created != 1700000000 || m.OwnedBy != "llorch" || m.Llorch.Workers != 3 || m.Llorch.Ready != 2 {
		t.Errorf("model = %+v", m)
	}

	r = do(t, ts, http.MethodGet, "/v1/models/org/big", "")
	if m := object(t, r.body); r.status != 200 || m["id"] != "org/big" || m["object"] != "model" {
		t.Errorf("retrieve: %d %s", r.status, r.body)
	}
	if e := errorOf(t, do(t, ts, http.MethodGet, "/v1/models/nope", ""), 404); e["code"] != "model_not_found" {
		t.Errorf("error = %v", e)
	}

	ts = server(t, &backend{models: nil})
	if r := do(t, ts, http.MethodGet, "/v1/models", ""); r.status != 200 || !bytes.Contains(r.body, []byte(`"data":[]`)) {
		t.Errorf("empty list: %s", r.body)
	}
	ts = server(t, &backend{modelsErr: &api.Error{Code: api.CodePoolUnavailable, Message: "down"}})
	errorOf(t, do(t, ts, http.MethodGet, "/v1/models", ""), 503)
}

func TestRequestErrors(t *testing.T) {
	b := &backend{script: script{events: hello(api.StopEOS)}}
	ts := server(t, b)
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
		status           int
		param            any
	}{
		{"bad json", "/v1/chat/completions", `{"model":`, nil, 400, nil},
		{"n=20", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"n":20}`, nil, 400, "n"},
		{"bad priority", "/v1/chat/completions", chatBody, []string{openai.PriorityHeader, "urgent"}, 400, openai.PriorityHeader},
		{"missing prompt", "/v1/completions", `{"model":"m"}`, nil, 400, "prompt"},
		{"temperature", "/v1/completions", `{"model":"m","prompt":"x","temperature":9}`, nil, 400, "temperature"},
		{"body too large", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", api.MaxRequestBytes) + `"}]}`, nil, 413, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := errorOf(t, post(t, ts, tc.path, tc.body, tc.hdr...), tc.status)
			if e["param"] != tc.param || e["type"] != "invalid_request_error" {
				t.Errorf("error = %v", e)
			}
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) != 0 {
		t.Errorf("invalid requests reached the backend: %d", len(b.got))
	}
}

func TestDaemonErrorsShaped(t *testing.T) {
	ts := server(t, &backend{})
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
		typ, code                string
	}{
		{"missing key", http.MethodPost, "/v1/chat/completions", "", 401, "authentication_error", "invalid_api_key"},
		{"wrong key", http.MethodGet, "/v1/models", "Bearer nope", 401, "authentication_error", "invalid_api_key"},
		{"middleware returns an error", http.MethodGet, "/v1/models", "Bearer echo-error", 401, "authentication_error", "invalid_api_key"},
		{"unknown path", http.MethodPost, "/v1/embeddings", "Bearer " + key, 404, "invalid_request_error", "unknown_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(chatBody))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			e := errorOf(t, response{resp.StatusCode, resp.Header, data}, tc.status)
			if e["type"] != tc.typ || e["code"] != tc.code {
				t.Errorf("error = %v", e)
			}
		})
	}
}
