package workerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

// Resuming a generation from the tokens already sent (resume_tokens): the
// continuation of a run cut after k tokens is the rest of the uncut run.

// greedy is a deterministic request whose every token depends on the ones
// before it: greedy, with the strongest repetition penalty, so a token once
// generated is (almost) never picked again within the penalty window. A
// sampler that did not see the resumed tokens, a gap or a repeat at the cut,
// would all change what follows.
func greedy(prompt string, n int) *api.ExecuteRequest {
	r := req(prompt, n, 1)
	r.Temperature = ptr(0.0)
	r.RepetitionPenalty = ptr(10.0)
	return r
}

func idsOf(toks []api.Token) []int32 {
	out := make([]int32, len(toks))
	for i, tk := range toks {
		out[i] = tk.ID
	}
	return out
}

func textOf(toks []api.Token) string {
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(tk.T)
	}
	return b.String()
}

// withResume returns a copy of r that resumes from toks.
func withResume(r *api.ExecuteRequest, toks []api.Token) *api.ExecuteRequest {
	c := *r
	c.ResumeTokens = idsOf(toks)
	return &c
}

// cut runs r, keeps its first k token events and cancels it, as an
// orchestrator that loses the stream after relaying k tokens.
func cut(t *testing.T, c *workerclient.Client, r *api.ExecuteRequest, k int) []api.Token {
	t.Helper()
	st, err := c.Execute(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var jobID string
	var toks []api.Token
	for len(toks) < k {
		ev, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Started != nil:
			jobID = ev.Started.JobID
		case ev.Token != nil:
			toks = append(toks, *ev.Token)
		case ev.Terminal():
			t.Fatalf("run ended after %d tokens, before the cut at %d: %+v %+v", len(toks), k, ev.End, ev.Error)
		}
	}
	if _, err := c.Cancel(context.Background(), jobID); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Terminal() {
			return toks
		}
	}
}

// sameTokens compares token events field by field.
func sameTokens(t *testing.T, what string, got, want []api.Token) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d token events, want %d\ngot:  %+v\nwant: %+v", what, len(got), len(want), got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: event %d = %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// checkResumed checks a resumed run against the uncut run it continues.
func checkResumed(t *testing.T, res, full *workerclient.Result, k int) {
	t.Helper()
	if res.Error != nil || res.End == nil {
		t.Fatalf("resumed run: %v", res.Error)
	}
	if res.Started.ResumedTokens != k || res.Started.MaxTokens != full.Started.MaxTokens {
		t.Errorf("started = %+v, want resumed_tokens %d and the uncut run's max_tokens %d", res.Started, k, full.Started.MaxTokens)
	}
	sameTokens(t, "after the cut", res.Tokens, full.Tokens[k:])
	e, f := res.End, full.End
	if e.TokensOut != f.TokensOut || e.PromptTokens != f.PromptTokens || e.StopReason != f.StopReason || e.StopSequenceMatched != f.StopSequenceMatched {
		t.Errorf("end = %+v, want the uncut run's %+v", e, f)
	}
}

func TestResumeContinuesRun(t *testing.T) {
	w := startWorker(t, nil)
	const n = 40
	base := greedy("Once upon a time", n)
	full := collect(t, w.client, base)
	if full.End == nil || full.End.TokensOut != n || full.End.StopReason != api.StopMaxTokens {
		t.Fatalf("uncut run: %+v %v", full.End, full.Error)
	}
	for _, k := range []int{1, 2, 7, 20, n - 1} {
		for _, cache := range []bool{true, false} {
			t.Run(fmt.Sprintf("cut at %d cache %v", k, cache), func(t *testing.T) {
				sent := cut(t, w.client, base, k)
				sameTokens(t, "before the cut", sent, full.Tokens[:k])
				r := withResume(base, sent)
				r.CachePrompt = ptr(cache)
				res := collect(t, w.client, r)
				checkResumed(t, res, full, k)
				if textOf(sent)+res.Text() != full.Text() {
					t.Errorf("text %q + %q, want %q", textOf(sent), res.Text(), full.Text())
				}
				// With the cache, the slot still holds the cut run's KV: the
				// whole prompt (and the resumed tokens but the last) is reused.
				want := 0
				if cache {
					want = full.End.PromptTokens
				}
				if res.End.CachedTokens != want || res.Started.CachedTokens != want {
					t.Errorf("cached_tokens started %d end %d, want %d", res.Started.CachedTokens, res.End.CachedTokens, want)
				}
			})
		}
	}
}

// TestResumeMultiByteCharacterAtCut: "€" is three byte tokens; a cut after
// the first or second leaves its bytes held back, and the resumed run emits
// the whole character, as the uncut run did.
func TestResumeMultiByteCharacterAtCut(t *testing.T) {
	w := startWorker(t, nil)
	euro := tokenIDs(t, "€")
	if len(euro) != 3 {
		t.Fatalf("€ is %d tokens, want 3 byte tokens", len(euro))
	}
	// Biased in decreasing order, with the strongest penalty: the first three
	// tokens are €'s bytes in order, each picked once the one before is
	// penalised.
	base := greedy("The sea", 8)
	base.LogitBias = map[string]float64{fmt.Sprint(euro[0]): 100, fmt.Sprint(euro[1]): 60, fmt.Sprint(euro[2]): 30}
	full := collect(t, w.client, base)
	if full.End == nil || len(full.Tokens) != 8 {
		t.Fatalf("uncut run: %+v %v", full.End, full.Error)
	}
	if got := full.Tokens[:3]; got[0].T != "" || got[1].T != "" || got[2].T != "€" {
		t.Fatalf("uncut run does not split € over three tokens: %+v", got)
	}
	for k := 1; k < 8; k++ {
		t.Run(fmt.Sprint("cut at ", k), func(t *testing.T) {
			sent := cut(t, w.client, base, k)
			sameTokens(t, "before the cut", sent, full.Tokens[:k])
			checkResumed(t, collect(t, w.client, withResume(base, sent)), full, k)
		})
	}
}

// TestResumeStopSequenceAcrossCut: text held back at the cut because it may
// start a stop sequence is dropped when the resumed run completes the stop,
// and emitted when it turns out not to be one.
func TestResumeStopSequenceAcrossCut(t *testing.T) {
	w := startWorker(t, nil)
	const n = 40
	base := greedy("The sea", n)
	plain := collect(t, w.client, base)
	if plain.End == nil || plain.End.TokensOut != n {
		t.Fatalf("uncut run: %+v %v", plain.End, plain.Error)
	}
	text := plain.Text()
	// A cut k whose last token ends with two ASCII bytes, followed by three
	// more, where the five bytes first occur.
	k, b := 0, 0
	for i := 4; i < n-4; i++ {
		last, end := plain.Tokens[i-1].T, len(textOf(plain.Tokens[:i]))
		if len(last) >= 2 && isASCII(last) && end+3 <= len(text) && isASCII(text[end:end+3]) && strings.Index(text, text[end-2:end+3]) == end-2 {
			k, b = i, end
			break
		}
	}
	if k == 0 {
		t.Fatalf("no usable cut in %q", text)
	}
	stop := text[b-2 : b+3]

	t.Run("stop completed after the cut", func(t *testing.T) {
		r := *base
		r.Stop = []string{stop}
		full := collect(t, w.client, &r)
		if full.End == nil || full.End.StopReason != api.StopSequence || full.End.StopSequenceMatched != stop || full.Text() != text[:b-2] {
			t.Fatalf("uncut run with stop %q: %+v, text %q", stop, full.End, full.Text())
		}
		sent := cut(t, w.client, &r, k)
		sameTokens(t, "before the cut", sent, full.Tokens[:k])
		if got := textOf(sent); got != text[:b-2] {
			t.Fatalf("cut run sent %q, want %q (the stop's start held back)", got, text[:b-2])
		}
		res := collect(t, w.client, withResume(&r, sent))
		checkResumed(t, res, full, k)
		if res.Text() != "" {
			t.Errorf("resumed run emitted %q after the cut", res.Text())
		}

		// A worker that died after the stop's last token was sent, before
		// the end: the resumed run ends at once, as the uncut one did.
		res = collect(t, w.client, withResume(&r, full.Tokens))
		if res.End == nil || len(res.Tokens) != 0 || res.Started.ResumedTokens != len(full.Tokens) {
			t.Fatalf("resumed from every token: %+v, %d tokens, %v", res.End, len(res.Tokens), res.Error)
		}
		checkResumed(t, res, full, len(full.Tokens))
		// No token may follow the one that completed the stop.
		more := withResume(&r, full.Tokens)
		more.ResumeTokens = append(more.ResumeTokens, 100)
		status, eb, _ := postRaw(t, w.url+"/execute", mustJSON(t, more))
		checkFieldError(t, status, eb, http.StatusBadRequest, api.CodeInvalidRequest, "resume_tokens")
	})
	t.Run("held text that is no stop", func(t *testing.T) {
		r := *base
		r.Stop = []string{text[b-2:b] + "\u2603\u2603"}
		if strings.Contains(text, r.Stop[0]) {
			t.Fatalf("%q occurs in %q", r.Stop[0], text)
		}
		full := collect(t, w.client, &r)
		if full.End == nil || full.End.StopReason != api.StopMaxTokens || full.Text() != text {
			t.Fatalf("uncut run: %+v, text %q", full.End, full.Text())
		}
		sent := cut(t, w.client, &r, k)
		sameTokens(t, "before the cut", sent, full.Tokens[:k])
		if got := textOf(sent); got != text[:b-2] {
			t.Fatalf("cut run sent %q, want %q (two bytes held back)", got, text[:b-2])
		}
		res := collect(t, w.client, withResume(&r, sent))
		checkResumed(t, res, full, k)
		if got := textOf(sent) + res.Text(); got != text {
			t.Errorf("text %q, want %q", got, text)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// TestResumeAfterEndOfGeneration: resumed tokens that end with an
// end-of-generation token (the worker died after flushing the text before
// it) end the job at once; one anywhere else is refused.
func TestResumeAfterEndOfGeneration(t *testing.T) {
	w := startWorker(t, nil)
	eos := tokenIDs(t, "<|endoftext|>")[0]
	base := greedy("Once upon a time", 20)
	full := collect(t, w.client, base)
	if full.End == nil || len(full.Tokens) != 20 {
		t.Fatalf("run: %+v %v", full.End, full.Error)
	}
	r := withResume(base, full.Tokens[:5])
	r.IgnoreEOS = false
	r.ResumeTokens = append(r.ResumeTokens, eos)
	res := collect(t, w.client, r)
	if res.End == nil || res.End.StopReason != api.StopEOS || res.End.TokensOut != 6 || len(res.Tokens) != 0 || res.Started.ResumedTokens != 6 {
		t.Fatalf("resumed up to EOS: %+v, %d tokens, started %+v, %v", res.End, len(res.Tokens), res.Started, res.Error)
	}
	r.ResumeTokens = append(r.ResumeTokens, 100)
	status, eb, _ := postRaw(t, w.url+"/execute", mustJSON(t, r))
	checkFieldError(t, status, eb, http.StatusBadRequest, api.CodeInvalidRequest, "resume_tokens")
	// The slot is free and the worker serves.
	if res := collect(t, w.client, req("after", 2, 1)); res.End == nil {
		t.Fatalf("next job: %v", res.Error)
	}
}

// TestResumeBesideBusySlots: a resumed run that shares every decode step
// with other streams continues without gap or repeat.
func TestResumeBesideBusySlots(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 3; c.Ctx = 2048 })
	const n, k = 40, 10
	base := sampledReq("Resume me beside the others", n, 7)
	sent := cut(t, w.client, base, k)
	// Steps of three sequences are the resumed run's.
	before := stepsAbove(t, w.url, 2)
	// Held until all three have a slot: the two others (2000 tokens) run
	// beside the resumed one from its first step to its last.
	w.pace.hold()
	var busy []*workerclient.Stream
	defer func() {
		for _, st := range busy {
			st.Close()
		}
	}()
	for i := range 2 {
		st, err := w.client.Execute(context.Background(), req(fmt.Sprintf("busy stream %d", i), 2000, int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		busy = append(busy, st)
	}
	st, err := w.client.Execute(context.Background(), withResume(base, sent))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w.pace.release()
	res := readStream(t, st)
	if res.End == nil || res.End.StopReason != api.StopMaxTokens || res.End.TokensOut != n || res.Started.ResumedTokens != k {
		t.Fatalf("resumed run: started %+v end %+v %v", res.Started, res.End, res.Error)
	}
	if len(res.Tokens) != n-k {
		t.Fatalf("%d token events after the cut, want %d", len(res.Tokens), n-k)
	}
	for i, tk := range res.Tokens {
		if tk.I != k+i || tk.ID < 0 || tk.ID >= 768 || !utf8.ValidString(tk.T) {
			t.Errorf("event %d after the cut = %+v, want index %d", i, tk, k+i)
		}
	}
	// Each of the resumed run's steps (its prefill, then n-k-1 decodes)
	// carried the busy streams too.
	if got := stepsAbove(t, w.url, 2) - before; got != n-k {
		t.Errorf("%v multi-sequence steps while resuming, want at least %d", got, n-k)
	}
}

func TestResumeValidation(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Ctx = 1024 })
	zeros := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]"
	}
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"negative id", `{"prompt":"x","max_tokens":8,"resume_tokens":[1,-2]}`, 400, api.CodeInvalidRequest},
		{"id beyond the vocabulary", `{"prompt":"x","max_tokens":8,"resume_tokens":[1,768]}`, 400, api.CodeInvalidRequest},
		{"too many", `{"prompt":"x","resume_tokens":` + zeros(api.MaxResumeTokens+1) + `}`, 400, api.CodeInvalidRequest},
		{"no room in the context", `{"prompt":"x","resume_tokens":` + zeros(1023) + `}`, 400, api.CodeContextOverflow},
		{"as many as max_tokens", `{"prompt":"x","max_tokens":3,"resume_tokens":[1,2,3]}`, 400, api.CodeInvalidRequest},
		{"as many as the default max_tokens", `{"prompt":"x","resume_tokens":` + zeros(api.DefaultMaxTokens) + `}`, 400, api.CodeInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, eb, _ := postRaw(t, w.url+"/execute", tc.body)
			checkFieldError(t, status, eb, tc.status, tc.code, "resume_tokens")
		})
	}
	t.Run("default max_tokens reported", func(t *testing.T) {
		res := collect(t, w.client, &api.ExecuteRequest{Prompt: "x", ResumeTokens: []int32{1, 2}, IgnoreEOS: true, MaxTokens: nil})
		if res.Started.MaxTokens != api.DefaultMaxTokens || res.End == nil || res.End.TokensOut != api.DefaultMaxTokens {
			t.Fatalf("started %+v end %+v %v", res.Started, res.End, res.Error)
		}
	})
	t.Run("one fewer than max_tokens", func(t *testing.T) {
		res := collect(t, w.client, &api.ExecuteRequest{Prompt: "x", MaxTokens: ptr(3), ResumeTokens: []int32{1, 2}, IgnoreEOS: true})
		if res.End == nil || res.End.TokensOut != 3 || len(res.Tokens) != 1 || res.Tokens[0].I != 2 {
			t.Fatalf("end %+v tokens %+v %v", res.End, res.Tokens, res.Error)
		}
	})
}

func checkFieldError(t *testing.T, status int, eb api.ErrorBody, wantStatus int, code, field string) {
	t.Helper()
	if status != wantStatus || eb.Error.Code != code {
		t.Fatalf("status %d %+v, want %d %s", status, eb.Error, wantStatus, code)
	}
	for _, f := range eb.Error.Fields {
		if f.Field == field {
			return
		}
	}
	t.Errorf("field %q not named: %+v", field, eb.Error)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestResumeEqualityOnModel runs the continuation check on a model of the
// operator's (`make check-resume` gives it the qwen05 Q4_0 synthetic model):
// a greedy run of LLORCH_RESUME_TOKENS tokens (default 200), cut at several
// points and continued with and without the prompt cache, and the same run
// while another job shares its batches. Each continuation must equal the
// uncut run; the log says where any diverged. Skipped without
// LLORCH_RESUME_MODEL.
func TestResumeEqualityOnModel(t *testing.T) {
	path := os.Getenv("LLORCH_RESUME_MODEL")
	if path == "" {
		t.Skip("LLORCH_RESUME_MODEL is not set")
	}
	n := 200
	if v := os.Getenv("LLORCH_RESUME_TOKENS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 || n > 4000 {
			t.Fatalf("LLORCH_RESUME_TOKENS=%q: want 2..4000", v)
		}
	}
	w := startWorker(t, func(c *workerd.Config) { c.ModelPath, c.Slots, c.Threads = path, 2, 2 })
	base := req("Once upon a time in a land far away, there lived", n, 1)
	base.Temperature = ptr(0.0)
	full := collect(t, w.client, base)
	if full.End == nil || len(full.Tokens) != n {
		t.Fatalf("uncut run: %+v %v", full.End, full.Error)
	}
	diverged := func(got []api.Token, from int) int {
		for i, tk := range got {
			if tk.ID != full.Tokens[from+i].ID {
				return from + i
			}
		}
		return -1
	}
	for _, k := range []int{1, n / 20, n / 4, n / 2, 3 * n / 4, n - 1} {
		for _, cache := range []bool{true, false} {
			r := withResume(base, full.Tokens[:k])
			r.CachePrompt = ptr(cache)
			res := collect(t, w.client, r)
			d := diverged(res.Tokens, k)
			t.Logf("cut at %d, prompt cache %v: %d tokens continued, divergence at %d (-1: none)", k, cache, len(res.Tokens), d)
			if d >= 0 || len(res.Tokens) != n-k {
				t.Errorf("cut at %d, cache %v: the continuation is not the rest of the uncut run", k, cache)
			}
		}
	}
	// The uncut run again while another job shares every batch.
	other := req("A completely different story begins with a dragon and", n+n/2, 2)
	other.Temperature = ptr(0.0)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = w.client.Collect(context.Background(), other) }()
	base.CachePrompt = ptr(false)
	shared := collect(t, w.client, base)
	<-done
	d := diverged(shared.Tokens, 0)
	t.Logf("uncut run beside another job: divergence at %d (-1: none)", d)
	if d >= 0 {
		t.Errorf("the run diverged at token %d when another job shared its batches", d)
	}
}
