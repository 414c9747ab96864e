package workerd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerd"
)

// The OpenAI-compatible API on a real worker (tiny model): what /v1 answers
// must be what /execute generates for the same request, with the end event's
// token counts as usage.

const oaModel = "tiny" // the model id: the file name without .gguf

type oaUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

type oaChoice struct {
	Message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"message"`
	Delta struct {
		Role    string  `json:"role"`
		Content *string `json:"content"`
	} `json:"delta"`
	Text         string  `json:"text"`
	FinishReason *string `json:"finish_reason"`
}

type oaObject struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Model   string     `json:"model"`
	Choices []oaChoice `json:"choices"`
	Usage   *oaUsage   `json:"usage"`
	Error   *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// oaPost sends a /v1 request and returns the status, headers and, for JSON
// answers, the decoded object.
func oaPost(t *testing.T, url, token, body string) (int, http.Header, oaObject) {
	t.Helper()
	status, hdr, data := post(t, url, token, body)
	var obj oaObject
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("status %d, not JSON: %s", status, data)
	}
	return status, hdr, obj
}

// oaStream sends a streaming /v1 request and returns its chunks (without [DONE]).
func oaStream(t *testing.T, url, body string) []oaObject {
	t.Helper()
	return chunks[oaObject](t, url, body)
}

func wantFinish(e *api.End) string {
	if e.StopReason == api.StopMaxTokens || e.StopReason == api.StopContextLimit {
		return "length"
	}
	return "stop"
}

func checkUsage(t *testing.T, u *oaUsage, e *api.End) {
	t.Helper()
	if u == nil {
		t.Fatal("no usage")
	}
	if u.PromptTokens != e.PromptTokens || u.CompletionTokens != e.TokensOut || u.TotalTokens != e.PromptTokens+e.TokensOut {
		t.Errorf("usage %+v, end %+v", *u, *e)
	}
	// /execute ran the same prompt first: all but its last token is cached.
	if u.PromptTokensDetails.CachedTokens != e.PromptTokens-1 {
		t.Errorf("cached_tokens = %d, want %d", u.PromptTokensDetails.CachedTokens, e.PromptTokens-1)
	}
}

func TestOpenAIChat(t *testing.T) {
	w := startWorker(t, nil)
	native := collect(t, w.client, &api.ExecuteRequest{
		Messages:  []api.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Tell me about the sea"}},
		MaxTokens: ptr(12), Seed: ptr(int64(5)), Temperature: ptr(0.9), Stop: []string{"zz"}})
	if native.End == nil {
		t.Fatalf("execute: %v", native.Error)
	}
	// The same request, as OpenAI clients send it (content as text parts once).
	body := `{"model":"tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Tell me about the sea"}]}],
		"max_completion_tokens":12,"seed":5,"temperature":0.9,"stop":"zz","n":1,"user":"u1","presence_penalty":0`

	t.Run("non-stream", func(t *testing.T) {
		status, _, obj := oaPost(t, w.url+"/v1/chat/completions", "", body+"}")
		if status != http.StatusOK || obj.Object != "chat.completion" || obj.Model != oaModel || len(obj.Choices) != 1 {
			t.Fatalf("status %d: %+v", status, obj)
		}
		c := obj.Choices[0]
		if c.Message.Role != "assistant" || c.Message.Content != native.Text() || *c.FinishReason != wantFinish(native.End) {
			t.Errorf("choice %+v, want %q (%s)", c, native.Text(), native.End.StopReason)
		}
		checkUsage(t, obj.Usage, native.End)
	})
	t.Run("stream with usage", func(t *testing.T) {
		chunks := oaStream(t, w.url+"/v1/chat/completions", body+`,"stream":true,"stream_options":{"include_usage":true}}`)
		if len(chunks) < 3 {
			t.Fatalf("chunks = %+v", chunks)
		}
		if d := chunks[0].Choices[0].Delta; d.Role != "assistant" {
			t.Errorf("first chunk delta = %+v", d)
		}
		var text strings.Builder
		var finish []string
		for _, c := range chunks[:len(chunks)-1] {
			if c.Object != "chat.completion.chunk" || c.ID != chunks[0].ID || c.Usage != nil {
				t.Errorf("chunk %+v", c)
			}
			if d := c.Choices[0].Delta; d.Content != nil {
				text.WriteString(*d.Content)
			}
			if f := c.Choices[0].FinishReason; f != nil {
				finish = append(finish, *f)
			}
		}
		if text.String() != native.Text() || fmt.Sprint(finish) != fmt.Sprint([]string{wantFinish(native.End)}) {
			t.Errorf("text %q finish %v, want %q %s", text.String(), finish, native.Text(), native.End.StopReason)
		}
		last := chunks[len(chunks)-1]
		if len(last.Choices) != 0 {
			t.Errorf("usage chunk has choices: %+v", last)
		}
		checkUsage(t, last.Usage, native.End)
	})
}

func TestOpenAICompletions(t *testing.T) {
	w := startWorker(t, nil)
	// No max_tokens: OpenAI's default for /completions, 16.
	native := collect(t, w.client, &api.ExecuteRequest{Prompt: "Once upon a time", MaxTokens: ptr(16), Seed: ptr(int64(8)), TopP: ptr(0.9)})
	if native.End == nil {
		t.Fatalf("execute: %v", native.Error)
	}
	body := `{"model":"tiny","prompt":"Once upon a time","seed":8,"top_p":0.9`
	status, _, obj := oaPost(t, w.url+"/v1/completions", "", body+"}")
	if status != http.StatusOK || obj.Object != "text_completion" || !strings.HasPrefix(obj.ID, "cmpl-") {
		t.Fatalf("status %d: %+v", status, obj)
	}
	if c := obj.Choices[0]; c.Text != native.Text() || *c.FinishReason != wantFinish(native.End) {
		t.Errorf("choice %+v, want %q", c, native.Text())
	}
	checkUsage(t, obj.Usage, native.End)

	chunks := oaStream(t, w.url+"/v1/completions", body+`,"stream":true,"stream_options":{"include_usage":true}}`)
	var text strings.Builder
	for _, c := range chunks[:len(chunks)-1] {
		text.WriteString(c.Choices[0].Text)
	}
	if text.String() != native.Text() {
		t.Errorf("streamed %q, want %q", text.String(), native.Text())
	}
	checkUsage(t, chunks[len(chunks)-1].Usage, native.End)
}

func TestOpenAIErrors(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Ctx = 256 })
	check := func(t *testing.T, body string, status int, typ, code, param string) http.Header {
		t.Helper()
		got, hdr, obj := oaPost(t, w.url+"/v1/chat/completions", "", body)
		if got != status || obj.Error == nil || obj.Error.Type != typ || obj.Error.Code == nil || *obj.Error.Code != code {
			t.Fatalf("status %d %+v, want %d %s %s", got, obj.Error, status, typ, code)
		}
		if p := obj.Error.Param; (p == nil) != (param == "") || (p != nil && *p != param) {
			t.Errorf("param = %v, want %q", p, param)
		}
		return hdr
	}
	t.Run("unknown model", func(t *testing.T) {
		check(t, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, 404, "invalid_request_error", "model_not_found", "")
	})
	t.Run("context overflow", func(t *testing.T) {
		check(t, `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":300}`, 400, "invalid_request_error", "context_length_exceeded", "max_tokens")
	})
	t.Run("validation", func(t *testing.T) {
		check(t, `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"n":3}`, 400, "invalid_request_error", "invalid_value", "n")
	})
	t.Run("all slots busy", func(t *testing.T) {
		// Held, the job keeps its slot while the request is refused.
		st, _ := heldStream(t, w, req("Tell me a long story", 200, 3), 1)
		defer st.Close()
		defer w.pace.release()
		hdr := check(t, `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`, 503, "server_error", "all_slots_busy", "")
		if hdr.Get("Retry-After") != "1" || hdr.Get("X-Should-Retry") != "true" {
			t.Errorf("headers %v", hdr)
		}
	})
}

func TestOpenAIAuthAndModels(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Token = "s3cret" })
	get := func(path, token string) (int, []byte) {
		status, _, data := request(t, http.MethodGet, w.url+path, token, "")
		return status, data
	}
	for _, token := range []string{"", "wrong"} {
		status, data := get("/v1/models", token)
		var obj oaObject
		if err := json.Unmarshal(data, &obj); err != nil {
			t.Fatalf("token %q: %d, not JSON: %s", token, status, data)
		}
		if status != http.StatusUnauthorized || obj.Error == nil || obj.Error.Type != "authentication_error" || *obj.Error.Code != "invalid_api_key" {
			t.Errorf("token %q: %d %s", token, status, data)
		}
	}
	if status, _, obj := oaPost(t, w.url+"/v1/chat/completions", "", `{}`); status != 401 || obj.Error == nil {
		t.Errorf("chat without token: %d %+v", status, obj)
	}
	status, data := get("/v1/models", "s3cret")
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
			Created int64  `json:"created"`
			Llorch  struct{ Workers, Ready int }
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &list); err != nil || status != 200 || list.Object != "list" || len(list.Data) != 1 {
		t.Fatalf("models: %d %s", status, data)
	}
	if m := list.Data[0]; m.ID != oaModel || m.Object != "model" || m.OwnedBy != "llorch" || m.Created == 0 || m.Llorch.Workers != 1 || m.Llorch.Ready != 1 {
		t.Errorf("model = %+v", m)
	}
	if status, data := get("/v1/models/tiny", "s3cret"); status != 200 || !strings.Contains(string(data), `"id":"tiny"`) {
		t.Errorf("retrieve: %d %s", status, data)
	}
	if status, data := get("/v1/nothing", "s3cret"); status != 404 || !strings.Contains(string(data), `"type":"invalid_request_error"`) {
		t.Errorf("unknown path: %d %s", status, data)
	}
	// The native API keeps its own error shape.
	if status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"x"}`); status != 401 || eb.Error == nil || eb.Error.Code != api.CodeUnauthorized {
		t.Errorf("/execute: %d %+v", status, eb.Error)
	}
}

// TestOpenAIDisconnectFreesSlot: a client that leaves mid-stream cancels its
// job, so the only slot takes the next request.
func TestOpenAIDisconnectFreesSlot(t *testing.T) {
	w := startWorker(t, nil)
	var bias []string
	for _, s := range []string{"<|endoftext|>", "<|im_end|>"} {
		bias = append(bias, fmt.Sprintf(`"%d":-100`, tokenIDs(t, s)[0]))
	}
	body := `{"model":"tiny","messages":[{"role":"user","content":"Tell me everything"}],"max_tokens":3000,"stream":true,"logit_bias":{` + strings.Join(bias, ",") + `}}`
	// The loop goes one step at a time: the job (3000 tokens) cannot end
	// before the server notices that the client left.
	w.pace.hold()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	w.pace.parked(t)
	for range 3 {
		w.pace.step(t)
	}
	sc := bufio.NewScanner(resp.Body)
	for !strings.HasPrefix(sc.Text(), "data: ") {
		if !sc.Scan() {
			t.Fatalf("stream ended early: %v", sc.Err())
		}
	}
	cancel()
	resp.Body.Close()
	// The slot is freed between decode steps, shortly after the disconnect.
	waitFor(t, 10*time.Second, "the slot to be freed", func() bool {
		h, err := w.client.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if h.SlotsBusy == 0 {
			return true
		}
		w.pace.tryStep(5 * time.Millisecond)
		return false
	})
	if got := metric(t, scrape(t, w.url), `llorch_worker_requests_total{outcome="cancelled"}`); got != 1 {
		t.Errorf("cancelled requests = %v, want 1", got)
	}
	w.pace.release()
	res := collect(t, w.client, req("after the client left", 2, 1))
	if res.End == nil {
		t.Fatalf("slot not freed: %v", res.Error)
	}
}
