package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// A request with n choices runs n generations: the first alone until its
// prompt is evaluated (its first token), then the others, which on a worker
// copy its KV cache instead of evaluating the prompt again. A choice with a
// seed given runs with seed + its index.

func (h *handlers) generate(c echo.Context, k kind) error {
	release(c)
	prio, f := priority(c.Request().Header.Get(PriorityHeader))
	if f != nil {
		return h.fail(c, f)
	}
	body, f := readBody(c)
	if f != nil {
		return h.fail(c, f)
	}
	p, f := parse(k, body)
	if f != nil {
		return h.fail(c, f)
	}
	p.req.Priority = prio
	if cl, ok := h.b.(ChoiceLimiter); ok && p.n > cl.MaxChoices() {
		return h.fail(c, invalid("n", "invalid_value", "Invalid value for 'n': this server runs at most %d choices at once, got %d.", cl.MaxChoices(), p.n))
	}
	ctx := c.Request().Context()
	r, err := h.submit(ctx, p)
	if err != nil {
		return h.failErr(c, err, p.rename)
	}
	defer r.close()
	m := newMeta(k, p.req.Model)
	if p.stream {
		h.stream(ctx, c, r, p, m)
		return nil
	}
	return h.collect(ctx, c, r, p, m)
}

// item is one event of one choice.
type item struct {
	i   int
	ev  api.Event
	err error
}

// run is the merged event stream of a request's choices.
type run struct {
	streams []Stream
	items   chan item
	stop    chan struct{}
	pre     []item // events of choice 0 read before the others started
}

// submit starts the n generations of a request.
func (h *handlers) submit(ctx context.Context, p *parsed) (*run, error) {
	st, err := h.b.Submit(ctx, &p.req)
	if err != nil {
		return nil, err
	}
	// The buffer lets a reader run ahead of a slow client write, and lets
	// stream coalesce what is already waiting into one flush.
	r := &run{streams: []Stream{st}, items: make(chan item, 64), stop: make(chan struct{})}
	if p.n > 1 {
		// Wait for choice 0's first token (its prompt is in the KV cache then)
		// or its end.
		failed := false
		for {
			ev, err := st.Next()
			r.pre = append(r.pre, item{0, ev, err})
			if err != nil || ev.Token != nil || ev.Terminal() {
				failed = err != nil || ev.Error != nil
				break
			}
		}
		// A first choice that failed fails the request: the others are
		// not started.
		for i := 1; i < p.n && !failed; i++ {
			req := p.req
			if s := req.Exec.Seed; s != nil {
				seed := (*s + int64(i)) % (1 << 32)
				req.Exec.Seed = &seed
			}
			if p.req.Exec.JobID != "" {
				req.Exec.JobID = ""
			}
			sti, err := h.b.Submit(ctx, &req)
			if err != nil {
				r.closeStreams()
				return nil, err
			}
			r.streams = append(r.streams, sti)
		}
	}
	for i, st := range r.streams {
		go r.read(i, st)
	}
	return r, nil
}

// read forwards choice i's events until its stream ends. Choice 0 starts
// with the events submit already read.
func (r *run) read(i int, st Stream) {
	send := func(it item) bool {
		select {
		case r.items <- it:
			return true
		case <-r.stop:
			return false
		}
	}
	if i == 0 {
		for _, it := range r.pre {
			if !send(it) {
				return
			}
			if it.err != nil || it.ev.Terminal() {
				return
			}
		}
	}
	for {
		ev, err := st.Next()
		if !send(item{i, ev, err}) || err != nil || ev.Terminal() {
			return
		}
	}
}

func (r *run) closeStreams() {
	for _, st := range r.streams {
		st.Close()
	}
}

// close stops the readers and releases every stream (a choice that has not
// ended is cancelled).
func (r *run) close() {
	close(r.stop)
	r.closeStreams()
}

// choice is the state of one choice while its events arrive.
type choice struct {
	index  int
	out    outputParser
	text   strings.Builder // content, for a non-streaming answer
	calls  []api.ToolCall
	lps    []*api.Logprob // logprobs not yet sent (stream) or all (collect)
	end    *api.End
	offset int // text offset of the next token (completions' logprobs)
	tl     *textLogprobs
}

// finishReason: a generation cut at the token limit is "length" even with
// calls (the last one's arguments may be cut), as OpenAI reports it.
func (ch *choice) finishReason() string {
	reason := finishReason(ch.end.StopReason)
	if len(ch.calls) > 0 && reason != "length" {
		return "tool_calls"
	}
	return reason
}

// usageOfChoices counts the prompt once and the completions of every choice.
func usageOfChoices(chs []*choice) Usage {
	u := usageOf(chs[0].end)
	for _, ch := range chs[1:] {
		u.CompletionTokens += ch.end.TokensOut
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// next returns the next event of the run; errors are *api.Error.
func (r *run) next(ctx context.Context) (item, error) {
	select {
	case it := <-r.items:
		if it.err != nil {
			if errors.Is(it.err, io.EOF) {
				it.err = io.ErrUnexpectedEOF
			}
			return it, brokenStream(it.err)
		}
		if it.ev.Error != nil {
			return it, it.ev.Error
		}
		return it, nil
	case <-ctx.Done():
		return item{}, ctx.Err()
	}
}

func (p *parsed) newChoices() []*choice {
	chs := make([]*choice, p.n)
	for i := range chs {
		chs[i] = &choice{index: i, out: plainOutput{}}
		if p.kind == kindCompletion && p.logprobs {
			chs[i].tl = newTextLogprobs()
		}
	}
	return chs
}

// started sets up choice i from its started event: a tool format means its
// text is parsed for tool calls.
func (p *parsed) started(ch *choice, ev *api.Started) {
	if ev.ToolFormat != "" && len(p.req.Exec.Tools) > 0 {
		ch.out = newToolOutput(ev.ToolFormat, p.req.Exec.Tools, p.req.Exec.ToolChoice)
	}
}

// addLogprob records a token's logprob for choice ch.
func (ch *choice) addLogprob(tok *api.Token) {
	if tok.LP == nil {
		return
	}
	if ch.tl != nil {
		lp := tok.LP
		ch.tl.Tokens = append(ch.tl.Tokens, lp.Token)
		ch.tl.TokenLogprobs = append(ch.tl.TokenLogprobs, lp.Logprob)
		top := make(map[string]float64, len(lp.Top))
		for _, a := range lp.Top {
			if _, dup := top[a.Token]; !dup {
				top[a.Token] = a.Logprob
			}
		}
		ch.tl.TopLogprobs = append(ch.tl.TopLogprobs, top)
		ch.tl.TextOffset = append(ch.tl.TextOffset, ch.offset)
		ch.offset += len(lp.Token)
		return
	}
	ch.lps = append(ch.lps, tok.LP)
}

// takeLogprobs returns the chat logprobs gathered so far and forgets them.
func (ch *choice) takeLogprobs(want bool) *chatLogprobs {
	if !want {
		return nil
	}
	out := &chatLogprobs{Content: make([]logprobEntry, 0, len(ch.lps))}
	for _, lp := range ch.lps {
		e := logprobEntry{Token: lp.Token, Logprob: lp.Logprob, Bytes: lp.UTF8Bytes(), TopLogprobs: make([]topEntry, 0, len(lp.Top))}
		for _, a := range lp.Top {
			e.TopLogprobs = append(e.TopLogprobs, topEntry{Token: a.Token, Logprob: a.Logprob, Bytes: a.UTF8Bytes()})
		}
		out.Content = append(out.Content, e)
	}
	ch.lps = ch.lps[:0]
	return out
}

// collect answers a non-streaming request with one object.
func (h *handlers) collect(ctx context.Context, c echo.Context, r *run, p *parsed, m meta) error {
	chs := p.newChoices()
	ended := 0
	for ended < p.n {
		it, err := r.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the client left; close cancels
			}
			return h.fail(c, fromAPI(brokenStream(err), p.rename))
		}
		ch := chs[it.i]
		switch ev := it.ev; {
		case ev.Started != nil:
			m.setModel(ev.Started.Model)
			p.started(ch, ev.Started)
		case ev.Token != nil:
			ch.addLogprob(ev.Token)
			for _, d := range ch.out.push(ev.Token.T) {
				ch.text.WriteString(d.content)
			}
		case ev.End != nil:
			for _, d := range ch.out.flush() {
				ch.text.WriteString(d.content)
			}
			ch.calls = ch.out.calls()
			ch.end = ev.End
			ended++
		}
	}
	if tm := chs[0].end.Timing; tm != nil { // an orchestrator's: where the time went
		c.Response().Header().Set("Server-Timing", tm.ServerTiming())
	}
	u := usageOfChoices(chs)
	if p.kind == kindChat {
		out := &chatCompletion{ID: m.id, Object: "chat.completion", Created: m.created,
			Model: m.model, SystemFingerprint: m.fingerprint, Usage: &u, Choices: make([]chatChoice, p.n)}
		for i, ch := range chs {
			msg := chatMessageOut{Role: "assistant", ToolCalls: ch.calls}
			if text := ch.text.String(); text != "" || len(ch.calls) == 0 {
				msg.Content = &text
			}
			out.Choices[i] = chatChoice{Index: i, Message: msg, FinishReason: ch.finishReason(), Logprobs: ch.takeLogprobs(p.logprobs)}
		}
		return c.JSON(http.StatusOK, out)
	}
	out := &textCompletion{ID: m.id, Object: "text_completion", Created: m.created,
		Model: m.model, SystemFingerprint: m.fingerprint, Usage: optUsage{set: true, u: &u}, Choices: make([]textChoice, p.n)}
	for i, ch := range chs {
		reason := ch.finishReason()
		out.Choices[i] = textChoice{Index: i, Text: ch.text.String(), FinishReason: &reason, Logprobs: ch.tl}
	}
	return c.JSON(http.StatusOK, out)
}

// newTextLogprobs is an empty /completions logprobs object (empty arrays,
// not nulls, as OpenAI sends them).
func newTextLogprobs() *textLogprobs {
	return &textLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
}

// stream answers a streaming request with chunks. The response is committed
// at the first started, token or end event, so errors before it are still
// HTTP statuses.
func (h *handlers) stream(ctx context.Context, c echo.Context, r *run, p *parsed, m meta) {
	var w *sse.Writer
	usage := optUsage{set: p.includeUsage} // "usage": null on every chunk when asked for
	send := func(v any) bool {
		if err := w.JSON("", "", v); err != nil {
			h.log.Debug("client gone", "err", err)
			return false
		}
		return true
	}
	chatChunkOf := func(i int, d delta, lp *chatLogprobs, finish *string) any {
		return &chatChunk{ID: m.id, Object: "chat.completion.chunk", Created: m.created, Model: m.model,
			SystemFingerprint: m.fingerprint, Usage: usage,
			Choices: []chunkChoice{{Index: i, Delta: d, Logprobs: lp, FinishReason: finish}}}
	}
	textChunkOf := func(i int, text string, lp *textLogprobs, finish *string) any {
		return &textCompletion{ID: m.id, Object: "text_completion", Created: m.created, Model: m.model,
			SystemFingerprint: m.fingerprint, Usage: usage, Choices: []textChoice{{Index: i, Text: text, Logprobs: lp, FinishReason: finish}}}
	}
	// A content chunk without logprobs, the one sent per token, is written
	// from its choice's template: no reflection per token.
	tpls := make([]chunkTemplate, p.n)
	var raw []byte
	sendText := func(i int, text string) bool {
		t := &tpls[i]
		if t.head == nil || t.model != m.model {
			var v any
			if p.kind == kindChat {
				mark := textMark
				v = chatChunkOf(i, delta{Content: &mark}, nil, nil)
			} else {
				v = textChunkOf(i, textMark, nil, nil)
			}
			*t = newChunkTemplate(v, m.model)
		}
		raw = append(api.AppendJSONString(append(raw[:0], t.head...), text), t.tail...)
		if err := w.Event(sse.Event{Data: raw}); err != nil {
			h.log.Debug("client gone", "err", err)
			return false
		}
		return true
	}
	chs := p.newChoices()
	commit := func() bool {
		if w != nil {
			return true
		}
		hd := c.Response().Header()
		hd.Set("Content-Type", "text/event-stream; charset=utf-8")
		hd.Set("Cache-Control", "no-cache")
		hd.Set("X-Accel-Buffering", "no")
		c.Response().WriteHeader(http.StatusOK)
		w = sse.NewWriter(c.Response())
		if p.kind == kindChat { // the first chunk of each choice carries the role
			empty := ""
			for i := range chs {
				if !send(chatChunkOf(i, delta{Role: "assistant", Content: &empty}, nil, nil)) {
					return false
				}
			}
		}
		return true
	}
	fail := func(e *api.Error) {
		f := fromAPI(e, p.rename)
		if w == nil {
			f.write(c.Response())
			return
		}
		send(&ErrorBody{Error: &f.err})
	}
	// emit sends the deltas of choice ch, the logprobs gathered so far with
	// the first content chunk.
	emit := func(ch *choice, ds []outDelta) bool {
		for _, d := range ds {
			switch {
			case d.call != nil:
				cd := toolCallDelta{Index: d.call.index, ID: d.call.id, Function: toolFunctionDelta{Name: d.call.name, Arguments: d.call.args}}
				if cd.ID != "" {
					cd.Type = "function"
				}
				if !send(chatChunkOf(ch.index, delta{ToolCalls: []toolCallDelta{cd}}, nil, nil)) {
					return false
				}
			case d.content != "":
				text := d.content
				var ok bool
				if p.kind == kindChat {
					if lp := ch.takeLogprobs(p.logprobs); lp != nil {
						ok = send(chatChunkOf(ch.index, delta{Content: &text}, lp, nil))
					} else {
						ok = sendText(ch.index, text)
					}
				} else {
					if tl := ch.takeText(); tl != nil {
						ok = send(textChunkOf(ch.index, text, tl, nil))
					} else {
						ok = sendText(ch.index, text)
					}
				}
				if !ok {
					return false
				}
			}
		}
		return true
	}
	ended := 0
	// step handles one event; false ends the stream.
	step := func(it item, err error) bool {
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			fail(brokenStream(err))
			return false
		}
		ch := chs[it.i]
		switch ev := it.ev; {
		case ev.Started != nil:
			m.setModel(ev.Started.Model)
			p.started(ch, ev.Started)
			if !commit() {
				return false
			}
		case ev.Token != nil:
			if !commit() {
				return false
			}
			ch.addLogprob(ev.Token)
			if !emit(ch, ch.out.push(ev.Token.T)) {
				return false
			}
		case ev.End != nil:
			if !commit() || !emit(ch, ch.out.flush()) {
				return false
			}
			ch.calls = ch.out.calls()
			ch.end = ev.End
			reason := ch.finishReason()
			var ok bool
			if p.kind == kindChat {
				var lp *chatLogprobs
				if len(ch.lps) > 0 {
					lp = ch.takeLogprobs(p.logprobs)
				}
				ok = send(chatChunkOf(ch.index, delta{}, lp, &reason))
			} else {
				ok = send(textChunkOf(ch.index, "", ch.takeText(), &reason))
			}
			if !ok {
				return false
			}
			ended++
		}
		return true
	}
	for ended < p.n {
		it, err := r.next(ctx)
		if w == nil { // nothing written yet: nothing to coalesce
			if !step(it, err) {
				return
			}
			continue
		}
		// Events already waiting go out with this one, in one flush.
		ok := true
		_ = w.Batch(func() error {
			for ok = step(it, err); ok && ended < p.n && len(r.items) > 0; ok = step(it, err) {
				it, err = r.next(ctx)
			}
			return nil
		})
		if !ok {
			return
		}
	}
	if p.includeUsage {
		u := usageOfChoices(chs)
		uc := &usageChunk{ID: m.id, Object: "chat.completion.chunk", Created: m.created, Model: m.model,
			SystemFingerprint: m.fingerprint, Choices: []struct{}{}, Usage: &u}
		if p.kind == kindCompletion {
			uc.Object = "text_completion"
		}
		if !send(uc) {
			return
		}
	}
	_ = w.Event(sse.Event{Data: []byte("[DONE]")})
}

// takeText returns the completions logprobs gathered since the last chunk.
func (ch *choice) takeText() *textLogprobs {
	if ch.tl == nil {
		return nil
	}
	out := ch.tl
	ch.tl = newTextLogprobs()
	return out
}

// outDelta is a piece of a choice's output: content text, or a piece of a
// tool call.
type outDelta struct {
	content string
	call    *callDelta
}

type callDelta struct {
	index          int
	id, name, args string
}

// outputParser turns a choice's generated text into content and tool calls.
type outputParser interface {
	push(text string) []outDelta
	flush() []outDelta
	calls() []api.ToolCall
}

// plainOutput is the output of a request without tools: all content.
type plainOutput struct{}

func (plainOutput) push(text string) []outDelta { return []outDelta{{content: text}} }
func (plainOutput) flush() []outDelta           { return nil }
func (plainOutput) calls() []api.ToolCall       { return nil }

// brokenStream is the error of a stream that failed before its terminal event.
func brokenStream(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	return &api.Error{Code: api.CodeWorkerLost, Message: "the generation stream broke: " + err.Error(), Retriable: true}
}

func (m *meta) setModel(model string) {
	if model != "" && model != m.model {
		m.model, m.fingerprint = model, fingerprint(model)
	}
}

// textMark stands for a chunk's text while its template is made; control
// characters keep it apart from anything else in the chunk.
const textMark = "\x01text\x01"

// chunkTemplate is a content chunk's JSON split around its text: the chunk
// of a token is head, the text as a JSON string, tail.
type chunkTemplate struct {
	head, tail []byte
	model      string // the model the chunk names; a new one makes a new template
}

func newChunkTemplate(v any, model string) chunkTemplate {
	b, err := json.Marshal(v)
	mark, _ := json.Marshal(textMark)
	i := bytes.LastIndex(b, mark) // the text comes after the id and model, before nothing but numbers
	if err != nil || i < 0 {      // cannot happen: the chunk types always encode, with the mark
		panic(fmt.Sprintf("openai: chunk template: %v", err))
	}
	return chunkTemplate{head: b[:i], tail: b[i+len(mark):], model: model}
}
