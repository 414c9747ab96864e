package workerd_test

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerd"
)

// The OpenAI-style features on /execute (the orchestrator's /v2/tasks passes
// the same fields): grammars, logprobs, penalties, and what a hostile client
// can do with them.

func TestGrammarConstrainsOutput(t *testing.T) {
	w := startWorker(t, nil)
	re := regexp.MustCompile(`^(yes|no)( (yes|no)){0,3}$`)
	for seed := range int64(6) {
		r := &api.ExecuteRequest{Prompt: "Answer:", MaxTokens: ptr(64), Seed: ptr(seed), Temperature: ptr(1.0),
			Grammar: `root ::= ans (" " ans){0,3}` + "\n" + `ans ::= "yes" | "no"`}
		res := collect(t, w.client, r)
		if res.End == nil || res.End.StopReason != api.StopEOS {
			t.Fatalf("seed %d: end %+v %v (text %q)", seed, res.End, res.Error, res.Text())
		}
		if !re.MatchString(res.Text()) {
			t.Errorf("seed %d: %q does not follow the grammar", seed, res.Text())
		}
	}
}

func TestResponseFormatOnExecute(t *testing.T) {
	w := startWorker(t, nil)
	schema := `{"type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":9},"ok":{"type":"boolean"}},"required":["n","ok"],"additionalProperties":false}`
	r := &api.ExecuteRequest{Prompt: "JSON:", MaxTokens: ptr(64), Seed: ptr(int64(3)),
		ResponseFormat: &api.ResponseFormat{Type: api.FormatJSONSchema, JSONSchema: &api.JSONSchemaSpec{Name: "x", Schema: json.RawMessage(schema)}}}
	res := collect(t, w.client, r)
	var v struct {
		N  *int  `json:"n"`
		OK *bool `json:"ok"`
	}
	dec := json.NewDecoder(strings.NewReader(res.Text()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.N == nil || v.OK == nil || *v.N < 1 || *v.N > 9 {
		t.Fatalf("%q: %v %+v", res.Text(), err, v)
	}
}

// TestGrammarSurvivesResume: a generation cut and resumed (the orchestrator's
// migration) continues under the grammar from where it was, and the resumed
// run is the rest of the uncut one (greedy, as in resume_test.go: a seeded
// distribution's random state is not carried over).
func TestGrammarSurvivesResume(t *testing.T) {
	w := startWorker(t, nil)
	base := greedy("List:", 120)
	base.IgnoreEOS = false
	base.Grammar = `root ::= "[" item ("," item){3,5} "]"` + "\n" + `item ::= [a-z]{2,4}`
	full := collect(t, w.client, base)
	if full.End == nil || full.End.StopReason != api.StopEOS || len(full.Tokens) < 8 {
		t.Fatalf("uncut run: %+v %v %q", full.End, full.Error, full.Text())
	}
	k := len(full.Tokens) / 2
	sent := cut(t, w.client, base, k)
	res := collect(t, w.client, withResume(base, sent))
	checkResumed(t, res, full, k)
	if textOf(sent)+res.Text() != full.Text() {
		t.Errorf("resumed %q + %q, want %q", textOf(sent), res.Text(), full.Text())
	}
}

// TestGrammarHostile: grammars and resumed tokens that llama.cpp refuses are
// errors, never a crash of the worker.
func TestGrammarHostile(t *testing.T) {
	w := startWorker(t, nil)
	for name, g := range map[string]string{
		"syntax":          `root ::= "a`,
		"undefined rule":  `root ::= missing`,
		"left recursion":  `root ::= root "a" | "a"`,
		"no root":         `item ::= "a"`,
		"huge repetition": `root ::= "a"{0,100000000}`,
		"nul byte":        "root ::= \"a\x00\"",
	} {
		t.Run(name, func(t *testing.T) {
			status, eb, _ := postRaw(t, w.url+"/execute", mustJSON(t, &api.ExecuteRequest{Prompt: "x", MaxTokens: ptr(4), Grammar: g}))
			checkFieldError(t, status, eb, 400, api.CodeInvalidRequest, "grammar")
		})
	}
	t.Run("resume_tokens the grammar refuses", func(t *testing.T) {
		bad := tokenIDs(t, "zzz")
		r := &api.ExecuteRequest{Prompt: "x", MaxTokens: ptr(16), Grammar: `root ::= "yes" | "no"`, ResumeTokens: bad}
		res := collect(t, w.client, r)
		if res.Error == nil || res.Error.Code != api.CodeInvalidRequest {
			t.Fatalf("end %+v error %+v", res.End, res.Error)
		}
	})
	t.Run("ignore_eos with a grammar", func(t *testing.T) {
		status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"x","grammar":"root ::= \"a\"","ignore_eos":true}`)
		checkFieldError(t, status, eb, 400, api.CodeInvalidRequest, "ignore_eos")
	})
	// The worker still serves.
	if res := collect(t, w.client, req("still alive", 4, 1)); res.End == nil {
		t.Fatalf("after hostile grammars: %v", res.Error)
	}
}

func TestLogprobsOnTokenEvents(t *testing.T) {
	w := startWorker(t, nil)
	r := req("Probabilities", 12, 7)
	r.Logprobs, r.TopLogprobs = true, 4
	r.Temperature = ptr(0.0)
	res := collect(t, w.client, r)
	if len(res.Tokens) != 12 {
		t.Fatalf("%d tokens", len(res.Tokens))
	}
	for i, tk := range res.Tokens {
		lp := tk.LP
		if lp == nil || len(lp.Top) != 4 || lp.Logprob > 0 || math.IsNaN(lp.Logprob) {
			t.Fatalf("token %d: %+v", i, lp)
		}
		// Greedy: the chosen token is the most likely one.
		if lp.Top[0].ID != tk.ID || math.Abs(lp.Top[0].Logprob-lp.Logprob) > 1e-6 {
			t.Errorf("token %d (%d) is not the top alternative %+v", i, tk.ID, lp.Top[0])
		}
		for k := 1; k < len(lp.Top); k++ {
			if lp.Top[k].Logprob > lp.Top[k-1].Logprob {
				t.Errorf("token %d: alternatives out of order %+v", i, lp.Top)
			}
		}
	}
	// Without logprobs, none.
	if res := collect(t, w.client, req("Probabilities", 3, 7)); res.Tokens[0].LP != nil {
		t.Errorf("logprobs without asking: %+v", res.Tokens[0].LP)
	}
	// Probabilities of a grammar-constrained step sum to 1 over what it allows.
	r = &api.ExecuteRequest{Prompt: "x", MaxTokens: ptr(4), Grammar: `root ::= [ab]`, Logprobs: true, TopLogprobs: 20, Seed: ptr(int64(1))}
	res = collect(t, w.client, r)
	sum := 0.0
	for _, a := range res.Tokens[0].LP.Top {
		if a.Token != "a" && a.Token != "b" {
			t.Errorf("alternative %q outside the grammar", a.Token)
		}
		sum += math.Exp(a.Logprob)
	}
	if math.Abs(sum-1) > 1e-4 {
		t.Errorf("probabilities of the allowed tokens sum to %v", sum)
	}
}

func TestPenaltiesChangeOutput(t *testing.T) {
	w := startWorker(t, nil)
	base := req("again again again again", 24, 1)
	base.Temperature = ptr(0.0)
	plain := collect(t, w.client, base).Text()
	for _, pen := range []struct{ freq, pres float64 }{{2, 0}, {0, 2}, {1.5, 1.5}} {
		r := *base
		r.FrequencyPenalty, r.PresencePenalty = ptr(pen.freq), ptr(pen.pres)
		if got := collect(t, w.client, &r).Text(); got == plain {
			t.Errorf("penalties %+v: same output %q", pen, got)
		}
	}
	for _, bad := range []string{`"frequency_penalty":2.5`, `"presence_penalty":-3`, `"top_logprobs":21,"logprobs":true`, `"top_logprobs":2`} {
		status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"x",`+bad+`}`)
		if status != 400 || eb.Error.Code != api.CodeInvalidRequest {
			t.Errorf("%s: %d %+v", bad, status, eb.Error)
		}
	}
}

// TestChoicesShareThePrompt: the choices of an n > 1 request after the first
// start from its KV cache (a copy), not from a second evaluation of the
// prompt, and each is its own generation.
func TestChoicesShareThePrompt(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 3 })
	long := strings.Repeat("The choices share one evaluated prompt. ", 20)
	before := metric(t, scrape(t, w.url), "llorch_worker_prompt_cache_copies_total")
	status, _, obj := oaPost(t, w.url+"/v1/chat/completions", "",
		`{"model":"tiny","n":3,"seed":4,"temperature":1,"max_tokens":12,"messages":[{"role":"user","content":"`+long+`"}]}`)
	if status != 200 || len(obj.Choices) != 3 {
		t.Fatalf("status %d: %+v", status, obj)
	}
	if got := metric(t, scrape(t, w.url), "llorch_worker_prompt_cache_copies_total") - before; got != 2 {
		t.Errorf("%v choices copied the first one's KV, want 2", got)
	}
	if obj.Usage == nil || obj.Usage.PromptTokens < 100 {
		t.Errorf("usage %+v: the prompt counts once", obj.Usage)
	}
}
