package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// openAI sends streamed requests to an OpenAI-compatible server's
// /v1/completions or /v1/chat/completions.
type openAI struct {
	hc        *http.Client
	url       string // the endpoint's full URL
	key       string
	model     string
	chat      bool
	ignoreEOS bool
	seed      int64
	// sent numbers the requests for their Idempotency-Key.
	sent atomic.Uint64
}

var _ sender = (*openAI)(nil)

type oaMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type oaRequest struct {
	Model         string      `json:"model,omitempty"`
	Prompt        *string     `json:"prompt,omitempty"`
	Messages      []oaMessage `json:"messages,omitempty"`
	MaxTokens     int         `json:"max_tokens"`
	Temperature   float64     `json:"temperature"`
	Seed          int64       `json:"seed"`
	Stream        bool        `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
}

// oaChunk is what is read of a completion chunk, a chat chunk, or an error
// sent in the stream.
type oaChunk struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
	// Timings is llama-server's: cache_n is the prompt tokens it took from
	// its cache.
	Timings *struct {
		CacheN *int `json:"cache_n"`
	} `json:"timings"`
	Error json.RawMessage `json:"error"`
}

func (c *openAI) body(r *request) ([]byte, error) {
	q := oaRequest{Model: c.model, MaxTokens: r.maxTokens, Seed: c.seed, Stream: true, IgnoreEOS: c.ignoreEOS}
	q.StreamOptions.IncludeUsage = true
	switch {
	case c.chat && r.messages != nil:
		for _, m := range r.messages {
			q.Messages = append(q.Messages, oaMessage{m.Role, m.Content})
		}
	case c.chat:
		q.Messages = []oaMessage{{"user", r.prompt}}
	case r.messages != nil:
		p := messagesText(r.messages)
		q.Prompt = &p
	default:
		q.Prompt = &r.prompt
	}
	return json.Marshal(q)
}

func (c *openAI) send(ctx context.Context, r *request) *sample {
	s := &sample{maxTokens: r.maxTokens}
	body, err := c.body(r)
	if err != nil {
		s.fail("0 request", err.Error())
		return s
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		s.fail("0 request", err.Error())
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	// With an idempotency key Go's transport resends the request once on a
	// new connection when the server had closed the kept-alive one it was
	// written to before reading it (llama-server does, now and then): a
	// request no server saw is not a failure of the server's. The time of
	// the first try counts.
	req.Header.Set("Idempotency-Key", fmt.Sprintf("llorch-bench-%d-%d", c.seed, c.sent.Add(1)))
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	s.sent = time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		s.fail(transportKey(ctx, "connect"), err.Error())
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		drain(resp.Body)
		s.fail(errorKey(resp.StatusCode, data))
		return s
	}
	var last time.Time
	rd := sse.NewReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.fail("0 truncated", "the stream ended without [DONE]")
			} else {
				s.fail(transportKey(ctx, "read"), err.Error())
			}
			return s
		}
		now := time.Now()
		if string(ev.Data) == "[DONE]" {
			break
		}
		var ch oaChunk
		if err := json.Unmarshal(ev.Data, &ch); err != nil {
			s.fail("0 protocol", "a chunk is not JSON: "+err.Error())
			drain(resp.Body)
			return s
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			key, msg := errorKey(http.StatusOK, append(append([]byte(`{"error":`), ch.Error...), '}'))
			s.fail(key, msg)
			drain(resp.Body)
			return s
		}
		for _, choice := range ch.Choices {
			if t := choice.Text + choice.Delta.Content; t != "" {
				s.token(now, &last, t)
			}
		}
		if u := ch.Usage; u != nil {
			s.hasUsage, s.usageTokens = true, u.CompletionTokens
			s.hasPrompt, s.prompt = true, u.PromptTokens
			if u.PromptTokensDetails != nil {
				s.cached = u.PromptTokensDetails.CachedTokens
			}
		}
		if t := ch.Timings; t != nil && t.CacheN != nil && (ch.Usage == nil || ch.Usage.PromptTokensDetails == nil) {
			s.cached = *t.CacheN
		}
	}
	// Read to the end: what follows [DONE] is part of the response.
	drain(resp.Body)
	s.ended = time.Now()
	return s
}

// firstModel asks GET /v1/models for the first model's id ("" when the
// server lists none or does not answer).
func firstModel(ctx context.Context, hc *http.Client, base, key string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if getJSON(ctx, hc, base+"/v1/models", key, &out) != nil || len(out.Data) == 0 {
		return ""
	}
	id := out.Data[0].ID
	if len(id) > api.MaxModelLength {
		return ""
	}
	return id
}

// getJSON GETs url and decodes a 200 answer's JSON into out.
func getJSON(ctx context.Context, hc *http.Client, url, key string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}
