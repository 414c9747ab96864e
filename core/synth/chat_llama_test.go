//go:build cgo

package synth

import (
	"slices"
	"testing"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prompt"
)

// TestLlamaCppLoadsChatFamilies checks the Llama 3.1 and Mistral models
// against real llama.cpp and core/prompt: the template is detected as the
// family's by both, each marker is one control token, BOS is added and EOS
// ends generation, and only the tool-call markers render as text.
func TestLlamaCppLoadsChatFamilies(t *testing.T) {
	for _, tc := range []struct {
		chat   Chat
		tpl    prompt.Template
		marker string // the control token that opens a tool call
	}{
		{ChatLlama3, prompt.Llama3, "<|python_tag|>"},
		{ChatMistral, prompt.MistralV3, "[TOOL_CALLS]"},
	} {
		t.Run(string(tc.chat), func(t *testing.T) {
			p := TinyChat(tc.chat)
			spec, err := p.Chat.spec()
			if err != nil {
				t.Fatal(err)
			}
			m := writeAndLoad(t, p)
			defer m.Close()
			v, err := NewVocab(p.VocabSize, p.Merges, spec.control...)
			if err != nil {
				t.Fatal(err)
			}
			src := m.Info().ChatTemplateSource
			if got := prompt.Detect(src); got != tc.tpl {
				t.Fatalf("core/prompt detects %v, want %v", got, tc.tpl)
			}
			msgs := []api.Message{{Role: "user", Content: "Hello"}}
			want, err := tc.tpl.Format(msgs, true)
			if err != nil {
				t.Fatal(err)
			}
			got, err := llamacpp.ApplyTemplate(src, []llamacpp.ChatMessage{{Role: "user", Content: "Hello"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("llama.cpp formats %q, core/prompt %q", got, want)
			}

			for _, text := range spec.control {
				id := v.ID(text)
				toks, err := m.Tokenize(text, false, true)
				if err != nil {
					t.Fatal(err)
				}
				if len(toks) != 1 || int(toks[0]) != id {
					t.Errorf("%s tokenizes to %v, want [%d]", text, toks, id)
				}
				piece := string(m.Piece(backends.Token(id)))
				switch {
				case text == tc.marker && piece != text:
					t.Errorf("tool-call marker %s renders as %q", text, piece)
				case text != tc.marker && piece != "":
					t.Errorf("control token %s renders as %q", text, piece)
				}
			}
			toks, err := m.Tokenize(want, true, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(toks) == 0 || int(toks[0]) != v.ID(spec.bos) || slices.Index(toks[1:], toks[0]) >= 0 {
				t.Errorf("prompt tokens %v do not start with one BOS %d", toks, v.ID(spec.bos))
			}
			if !m.IsEOG(backends.Token(v.ID(spec.eos))) {
				t.Errorf("%s is not end of generation", spec.eos)
			}
			if m.IsEOG(backends.Token(v.ID(tc.marker))) {
				t.Errorf("%s is end of generation", tc.marker)
			}
		})
	}
}
