package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
)

// request is one request to send: a prompt (completions) or messages
// (chat); the sender converts between the two where its endpoint needs to.
type request struct {
	prompt    string
	messages  []api.Message
	maxTokens int
	// session is a llorch session id (native API only).
	session string
}

// sample is what one request measured.
type sample struct {
	sent, ended time.Time
	ttft        time.Duration
	itl         []time.Duration
	// streamTokens counts token-bearing chunks (OpenAI) or token events
	// (native); usageTokens is the server's count (usage.completion_tokens,
	// end.tokens_out) when hasUsage.
	streamTokens int
	usageTokens  int
	hasUsage     bool
	prompt       int
	cached       int
	hasPrompt    bool
	maxTokens    int
	// text is the generated text (sessions append it to the conversation).
	text strings.Builder
	// session and turn place a session's request (0 outside sessions).
	session, turn int
	// errKey is "" for a request that ended normally, else "STATUS CODE".
	errKey string
	errMsg string
}

func (s *sample) e2e() time.Duration { return s.ended.Sub(s.sent) }

// token records a token-bearing chunk or token event arriving now.
func (s *sample) token(now time.Time, last *time.Time, text string) {
	if s.streamTokens == 0 {
		s.ttft = now.Sub(s.sent)
	} else {
		s.itl = append(s.itl, now.Sub(*last))
	}
	*last = now
	s.streamTokens++
	s.text.WriteString(text)
}

func (s *sample) fail(key, msg string) {
	s.errKey, s.errMsg = key, msg
	if s.ended.IsZero() {
		s.ended = time.Now()
	}
}

// sender sends one request and measures it. It reads the response to its
// end and never returns early without recording why in the sample.
type sender interface {
	send(ctx context.Context, r *request) *sample
}

// transportKey names a failure without an HTTP status: the run's timeout,
// a cancel, or what broke (connect before a response, read after one).
func transportKey(ctx context.Context, what string) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "0 timeout"
	case ctx.Err() != nil:
		return "0 cancelled"
	}
	return "0 " + what
}

// errorKey reads the error code of an error body, OpenAI-shaped
// ({"error":{"code","type","message"}}, code a string, number or null),
// llorch's (the same with code a string), vLLM's top-level
// ({"object":"error","type","code"}) or Ollama's ({"error":"message"}),
// and returns "STATUS CODE" ("STATUS" alone when the body names no code)
// and a message.
func errorKey(status int, body []byte) (key, msg string) {
	var b struct {
		Error json.RawMessage `json:"error"`
		Type  string          `json:"type"`
		Code  json.RawMessage `json:"code"`
		Msg   string          `json:"message"`
	}
	code := ""
	if json.Unmarshal(body, &b) == nil {
		var e struct {
			Code    json.RawMessage `json:"code"`
			Type    string          `json:"type"`
			Message string          `json:"message"`
		}
		var s string
		switch {
		case len(b.Error) > 0 && json.Unmarshal(b.Error, &e) == nil:
			code, msg = rawCode(e.Code, e.Type), e.Message
		case len(b.Error) > 0 && json.Unmarshal(b.Error, &s) == nil:
			msg = s
		default:
			code, msg = rawCode(b.Code, b.Type), b.Msg
		}
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
	}
	key = strconv.Itoa(status)
	if code != "" {
		key += " " + code
	}
	return key, msg
}

// rawCode is a code field as a short token: a string, a number, or typ
// when the code is null or absent.
func rawCode(raw json.RawMessage, typ string) string {
	var s string
	var n json.Number
	switch {
	case json.Unmarshal(raw, &s) == nil && s != "":
	case json.Unmarshal(raw, &n) == nil && n != "":
		s = n.String()
	default:
		s = typ
	}
	return sanitizeCode(s)
}

// sanitizeCode keeps a code a short printable token (codes become map keys
// and table cells).
func sanitizeCode(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// drain reads what is left of a body, bounded, so the connection is reused
// and the stream was read to its end.
func drain(r io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
}

// messagesText flattens messages into one prompt for the completions
// endpoint.
func messagesText(ms []api.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
	}
	return b.String()
}
