package orchestrator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/openai/openaitest"
)

// The OpenAI API goes through the same admission, queue, scheduler and relay.
func TestOpenAIThroughOrchestrator(t *testing.T) {
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-test-0001", Role: RoleAdmin}}
	cfg.WorkerToken = "worker-token-1"
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 2, "--token", "worker-token-1")

	// The end-of-generation tokens are banned: the random model must not end
	// the answer before its 8 tokens.
	chat := `{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"seed":3,"temperature":0,"logit_bias":` + noEOS(t) + `}`
	resp := o.do(t, http.MethodPost, "/v1/chat/completions", chat)
	out := decode[chatCompletion](t, resp, http.StatusOK)
	if out.Object != "chat.completion" || len(out.Choices) != 1 || out.Choices[0].Message.Role != "assistant" ||
		out.Usage.CompletionTokens != 8 || out.Usage.TotalTokens != out.Usage.PromptTokens+out.Usage.CompletionTokens {
		t.Fatalf("response %+v", out)
	}

	// Streaming: chunks then [DONE], with the same text for the same seed.
	resp = o.do(t, http.MethodPost, "/v1/chat/completions", strings.Replace(chat, `"seed":3`, `"seed":3,"stream":true`, 1))
	body := readBodyOK(t, resp)
	if !strings.Contains(body, `"chat.completion.chunk"`) || !strings.HasSuffix(strings.TrimSpace(body), "data: [DONE]") {
		t.Fatalf("stream body %s", body)
	}
	var text strings.Builder
	for _, line := range strings.Split(body, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		_ = json.Unmarshal([]byte(data), &c)
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	if text.String() != out.Choices[0].Message.Content {
		t.Fatalf("streamed %q, non-streamed %q", text.String(), out.Choices[0].Message.Content)
	}

	models := decode[struct {
		Data []struct {
			ID     string
			Llorch struct{ Workers, Ready int }
		}
	}](t, o.do(t, http.MethodGet, "/v1/models", nil), http.StatusOK)
	if len(models.Data) != 1 || models.Data[0].ID != "tiny" || models.Data[0].Llorch.Ready != 1 {
		t.Fatalf("models %+v", models)
	}

	// Errors in OpenAI's shape.
	resp = o.do(t, http.MethodPost, "/v1/chat/completions", strings.Replace(chat, `"tiny"`, `"nope"`, 1))
	e := decode[openAIError](t, resp, http.StatusNotFound)
	if e.Error.Code != "model_not_found" {
		t.Fatalf("404 body %+v", e)
	}
	o.key = "wrong"
	resp = o.do(t, http.MethodGet, "/v1/models", nil)
	e = decode[openAIError](t, resp, http.StatusUnauthorized)
	if e.Error.Type != "authentication_error" {
		t.Fatalf("401 body %+v", e)
	}
}

// TestOpenAISDKThroughOrchestrator runs tests/openai-sdk's check.mjs and
// features.mjs through the orchestrator with a user key: the features'
// fields reach the worker, and logprobs, tool formats and n come back
// through the relay.
func TestOpenAISDKThroughOrchestrator(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-sdk-0001", Role: RoleUser}}
	cfg.WorkerToken = "worker-token-1"
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 2, "--token", "worker-token-1")
	for _, script := range []string{"check.mjs", "features.mjs"} {
		t.Run(script, func(t *testing.T) { sdk.RunScript(t, script, o.URL, "sk-sdk-0001", "tiny") })
	}
}

type chatCompletion struct {
	Object  string
	Choices []struct {
		Message      struct{ Role, Content string }
		FinishReason string `json:"finish_reason"`
	}
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
}

type openAIError struct{ Error struct{ Code, Type string } }

func readBodyOK(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b.String())
	}
	return b.String()
}
