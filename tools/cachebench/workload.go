package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/llorch/llorch/core/bench"
	"github.com/llorch/llorch/core/sse"
)

// message is a chat message as /v1/chat/completions takes it.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// conversation is one client's dialogue: its own system prompt and one user
// message per turn; the assistant's answers are what the server returns.
type conversation struct {
	system string
	users  []string
}

// text is "request SEED: " and words words of bench.Text(SEED): two seeds'
// texts differ from the number on.
func text(seed, words int) string {
	return fmt.Sprintf("request %d: %s", seed, bench.Text(uint64(seed), words))
}

// sizing says how many words of text's text make a system prompt
// and a user message of the wanted token counts.
type sizing struct {
	systemWords, userWords int
	// The calibration: prompt tokens of a probe with an empty system
	// prompt and with probeWords words, and tokens per word.
	base, long int
	perWord    float64
}

// probeWords is the size of calibrate's long probe.
const probeWords = 300

// Seeds of text: conversations' system prompts, their user messages, and
// the calibration probes never share one.
const (
	seedSystem = 1_000
	seedUser   = 100_000
	seedProbe  = 900_000
)

// conversations builds n conversations of turns turns: distinct text
// everywhere, so two conversations share no prefix beyond the chat template's.
func conversations(n, turns int, sz sizing) []conversation {
	out := make([]conversation, n)
	for c := range out {
		out[c].system = text(seedSystem+c, sz.systemWords)
		for k := range turns {
			out[c].users = append(out[c].users, text(seedUser+c*100+k, sz.userWords))
		}
	}
	return out
}

// messages returns turn k's messages (k from 0): the system prompt, then
// user and assistant messages alternately, ending with user k. answers holds
// the assistant's replies to turns 0..k-1.
func (c conversation) messages(k int, answers []string) []message {
	ms := []message{{Role: "system", Content: c.system}}
	for i := range k {
		ms = append(ms, message{Role: "user", Content: c.users[i]}, message{Role: "assistant", Content: answers[i]})
	}
	return append(ms, message{Role: "user", Content: c.users[k]})
}

// sample is what one request measured.
type sample struct {
	Conv, Turn   int
	TTFT, E2E    time.Duration
	Chunks       int // chunks with content
	Completion   int // usage.completion_tokens
	PromptTokens int
	Cached       int
	Text         string
	Err          error
}

// client sends chat completions to the orchestrator's /v1.
type client struct {
	url, model string
	maxTokens  int
	bias       map[string]float64 // bans the end-of-generation tokens
	hc         *http.Client
}

type chatRequest struct {
	Model         string             `json:"model"`
	Messages      []message          `json:"messages"`
	MaxTokens     int                `json:"max_tokens"`
	Temperature   float64            `json:"temperature"`
	Stream        bool               `json:"stream"`
	StreamOptions map[string]bool    `json:"stream_options"`
	LogitBias     map[string]float64 `json:"logit_bias,omitempty"`
}

// chunk is the part of a chat.completion.chunk (or an error chunk) read here.
type chunk struct {
	Choices []struct {
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
	Error *struct {
		Message string `json:"message"`
		Code    any    `json:"code"`
	} `json:"error"`
}

// chat sends one streamed request and measures it. TTFT runs from sending
// the request to the first chunk with content.
func (cl *client) chat(ctx context.Context, ms []message, maxTokens int) (s sample) {
	body, err := json.Marshal(chatRequest{Model: cl.model, Messages: ms, MaxTokens: maxTokens, Stream: true,
		StreamOptions: map[string]bool{"include_usage": true}, LogitBias: cl.bias})
	if err != nil {
		s.Err = err
		return s
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.url+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		s.Err = err
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := cl.hc.Do(req)
	if err != nil {
		s.Err = err
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		s.Err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		return s
	}
	var text bytes.Buffer
	usage := false
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended without [DONE]")
			}
			s.Err = err
			return s
		}
		if string(ev.Data) == "[DONE]" {
			break
		}
		var c chunk
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			s.Err = fmt.Errorf("chunk %q: %w", ev.Data, err)
			return s
		}
		if c.Error != nil {
			s.Err = fmt.Errorf("error chunk: %s (%v)", c.Error.Message, c.Error.Code)
			return s
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content == "" {
				continue
			}
			if s.Chunks == 0 {
				s.TTFT = time.Since(start)
			}
			s.Chunks++
			text.WriteString(ch.Delta.Content)
		}
		if c.Usage != nil {
			usage = true
			s.PromptTokens, s.Completion = c.Usage.PromptTokens, c.Usage.CompletionTokens
			if d := c.Usage.PromptTokensDetails; d != nil {
				s.Cached = d.CachedTokens
			}
		}
	}
	s.E2E = time.Since(start)
	s.Text = text.String()
	switch {
	case !usage:
		s.Err = errors.New("no usage chunk")
	case s.Chunks == 0:
		s.Err = errors.New("no content")
	case s.Chunks > s.Completion:
		// A chunk holds one token's text or more (UTF-8 held back), never less.
		s.Err = fmt.Errorf("%d content chunks for %d completion tokens", s.Chunks, s.Completion)
	}
	return s
}

// calibrate measures the chat template's overhead and the tokens per word
// of text's text with two one-token requests, and sizes the
// system prompt and user messages from them.
func calibrate(ctx context.Context, cl *client, systemTokens, userTokens int) (sizing, error) {
	probe := func(n int) (int, error) {
		ms := []message{{Role: "system", Content: text(seedProbe+n, n)},
			{Role: "user", Content: "Hello"}}
		s := cl.chat(ctx, ms, 1)
		if s.Err != nil {
			return 0, fmt.Errorf("calibration request: %w", s.Err)
		}
		return s.PromptTokens, nil
	}
	base, err := probe(0)
	if err != nil {
		return sizing{}, err
	}
	long, err := probe(probeWords)
	if err != nil {
		return sizing{}, err
	}
	perWord := float64(long-base) / probeWords
	if perWord <= 0 {
		return sizing{}, fmt.Errorf("calibration: %d prompt tokens with %d words, %d without", long, probeWords, base)
	}
	return sizing{systemWords: max(1, int(float64(systemTokens)/perWord+0.5)), userWords: max(1, int(float64(userTokens)/perWord+0.5)),
		base: base, long: long, perWord: perWord}, nil
}

// workload runs every conversation in its own goroutine, starting them
// stagger apart, each turn after the previous one's answer. A failed turn
// ends its conversation. It returns the samples in no particular order and
// the wall time from the first request to the last answer.
func workload(ctx context.Context, cl *client, convs []conversation, stagger time.Duration, concurrency int) ([]sample, time.Duration) {
	if concurrency > 0 {
		return interleaved(ctx, cl, convs, concurrency)
	}
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	start := time.Now()
	for c, conv := range convs {
		wg.Go(func() {
			if sleep(ctx, time.Duration(c)*stagger) != nil {
				return
			}
			var answers []string
			for k := range conv.users {
				s := cl.chat(ctx, conv.messages(k, answers), cl.maxTokens)
				s.Conv, s.Turn = c, k
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
				if s.Err != nil {
					return
				}
				answers = append(answers, s.Text)
			}
		})
	}
	wg.Wait()
	return samples, time.Since(start)
}

// interleaved sends the turns round-robin across conversations — turn 1 of
// every conversation, then turn 2 of every conversation, … — with at most
// concurrency requests in flight (a closed loop). A turn waits for its
// conversation's previous turn (it carries that answer); a conversation
// whose turn failed sends no more.
func interleaved(ctx context.Context, cl *client, convs []conversation, concurrency int) ([]sample, time.Duration) {
	type item struct{ c, k int }
	var order []item
	turns := 0
	for _, conv := range convs {
		turns = max(turns, len(conv.users))
	}
	done := make([][]chan struct{}, len(convs))
	answers := make([][]string, len(convs))
	failed := make([]bool, len(convs))
	for k := range turns {
		for c, conv := range convs {
			if k < len(conv.users) {
				order = append(order, item{c, k})
			}
		}
	}
	for c, conv := range convs {
		done[c] = make([]chan struct{}, len(conv.users))
		for k := range done[c] {
			done[c][k] = make(chan struct{})
		}
	}
	var (
		mu      sync.Mutex
		samples []sample
		next    int
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range min(concurrency, len(order)) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == len(order) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				it := order[next]
				next++
				mu.Unlock()
				func() {
					defer close(done[it.c][it.k])
					if it.k > 0 {
						select {
						case <-done[it.c][it.k-1]:
						case <-ctx.Done():
							return
						}
					}
					mu.Lock()
					skip, prev := failed[it.c], append([]string(nil), answers[it.c]...)
					mu.Unlock()
					if skip {
						return
					}
					s := cl.chat(ctx, convs[it.c].messages(it.k, prev), cl.maxTokens)
					s.Conv, s.Turn = it.c, it.k
					mu.Lock()
					defer mu.Unlock()
					samples = append(samples, s)
					if s.Err != nil {
						failed[it.c] = true
						return
					}
					answers[it.c] = append(answers[it.c], s.Text)
				}()
			}
		})
	}
	wg.Wait()
	return samples, time.Since(start)
}

// noEOSBias is a logit_bias banning tokens.
func noEOSBias(ids []int) map[string]float64 {
	if len(ids) == 0 {
		return nil
	}
	b := make(map[string]float64, len(ids))
	for _, id := range ids {
		b[strconv.Itoa(id)] = -100
	}
	return b
}
