package bench

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
)

// native sends tasks to llorch's POST /v2/tasks and reads their native
// event stream through core/orchclient.
type native struct {
	c         *orchclient.Client
	model     string
	ignoreEOS bool
	seed      int64
}

var _ sender = (*native)(nil)

func (n *native) send(ctx context.Context, r *request) *sample {
	s := &sample{maxTokens: r.maxTokens}
	temp := 0.0
	q := &api.TaskRequest{Model: n.model, SessionID: r.session}
	q.Prompt, q.Messages = r.prompt, r.messages
	q.MaxTokens, q.Temperature, q.Seed, q.IgnoreEOS = &r.maxTokens, &temp, &n.seed, n.ignoreEOS
	s.sent = time.Now()
	st, err := n.c.SubmitStream(ctx, q)
	if err != nil {
		var oe *orchclient.Error
		switch {
		case errors.As(err, &oe) && oe.Status == 0:
			s.fail(transportKey(ctx, "connect"), oe.Err.Message)
		case errors.As(err, &oe):
			key := strconv.Itoa(oe.Status)
			if oe.Err != nil && oe.Err.Code != "" {
				key += " " + sanitizeCode(oe.Err.Code)
			}
			s.fail(key, oe.Error())
		default:
			s.fail("0 request", err.Error())
		}
		return s
	}
	defer st.Close()
	var last time.Time
	for {
		ev, err := st.Next()
		switch {
		case errors.Is(err, io.EOF):
			if s.errKey == "" {
				s.ended = time.Now()
			}
			return s
		case err != nil && s.errKey == "":
			if errors.Is(err, io.ErrUnexpectedEOF) {
				s.fail("0 truncated", "the stream ended without a terminal event")
			} else {
				s.fail(transportKey(ctx, "read"), err.Error())
			}
			return s
		case err != nil:
			return s
		}
		now := time.Now()
		switch {
		case ev.Token != nil:
			s.token(now, &last, ev.Token.T)
		case ev.End != nil:
			s.hasUsage, s.usageTokens = true, ev.End.TokensOut
			s.hasPrompt, s.prompt, s.cached = true, ev.End.PromptTokens, ev.End.CachedTokens
		case ev.Error != nil:
			s.fail("200 "+sanitizeCode(ev.Error.Code), ev.Error.Message)
		}
		// After the terminal event Next returns io.EOF: the stream is read
		// to its end before the request counts as ended.
	}
}
