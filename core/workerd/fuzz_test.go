package workerd_test

import (
	"testing"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerd"
)

// FuzzDecodeExecute: the request decoder never panics; whatever it accepts
// satisfies every documented bound; whatever it rejects says why.
func FuzzDecodeExecute(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"hi","max_tokens":3,"seed":1}`,
		`{"messages":[{"role":"user","content":"x"}],"stop":["a","b"],"temperature":0.5}`,
		`{"prompt":"x","logit_bias":{"5":100,"-1":3},"top_k":-1}`,
		`{"prompt":"x","seed":4294967296}`, `[]`, `null`, `{"prompt":"\xff"}`,
		`{"prompt":"x","max_tokens":8,"resume_tokens":[1,2,3]}`,
		`{"prompt":"x","max_tokens":3,"resume_tokens":[1,2,3]}`,
		`{"prompt":"x","resume_tokens":[0,-1]}`, `{"prompt":"x","resume_tokens":[2147483648]}`,
		`{"prompt":"x","resume_tokens":"abc"}`, `{"prompt":"x","resume_tokens":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, apiErr := workerd.DecodeExecute(body)
		if apiErr != nil {
			if req != nil || apiErr.Code != api.CodeInvalidRequest || apiErr.Message == "" {
				t.Fatalf("bad rejection: %+v", apiErr)
			}
			return
		}
		if (req.Prompt == "") == (len(req.Messages) == 0) {
			t.Fatal("accepted without exactly one of prompt/messages")
		}
		if !utf8.ValidString(req.Prompt) || len(req.Stop) > api.MaxStopSequences {
			t.Fatal("accepted invalid prompt or stops")
		}
		p := req.Resolve(1)
		if p.MaxTokens < 1 || p.Temperature < 0 || p.Temperature > 2 || p.TopP < 0 || p.TopP > 1 || p.MinP < 0 || p.MinP > 1 {
			t.Fatalf("accepted out-of-range params %+v", p)
		}
		for tok := range p.LogitBias {
			if tok < 0 {
				t.Fatal("negative token id accepted")
			}
		}
		if len(req.ResumeTokens) > api.MaxResumeTokens || (req.MaxTokens != nil && len(req.ResumeTokens) >= *req.MaxTokens) {
			t.Fatalf("accepted %d resume_tokens (max_tokens %v)", len(req.ResumeTokens), req.MaxTokens)
		}
		for _, tok := range req.ResumeTokens {
			if tok < 0 {
				t.Fatal("negative resume token accepted")
			}
		}
	})
}
