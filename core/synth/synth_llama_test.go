//go:build cgo

package synth

import (
	"path/filepath"
	"testing"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
)

// TestLlamaCppLoadsTiny checks the synthetic model against real llama.cpp:
// it loads, tokenizes like the reference BPE encoder, detokenizes exactly,
// treats the ChatML tokens as control tokens and <|im_end|> as end of
// generation, and recognises the chat template.
func TestLlamaCppLoadsTiny(t *testing.T) {
	p := Tiny()
	m := writeAndLoad(t, p)
	defer m.Close()
	v, err := NewVocab(p.VocabSize, p.Merges)
	if err != nil {
		t.Fatal(err)
	}

	info := m.Info()
	if info.Arch != "llama" || info.VocabSize != p.VocabSize || info.CtxTrain != p.ContextLength || !info.HasChatTpl {
		t.Errorf("Info() = %+v", info)
	}

	for _, text := range []string{
		"Hello world, this is a test.",
		"The keeper's notebook: 112 steps!\n\nÜnïcödé ✓ and\ttabs  ",
	} {
		toks, err := m.Tokenize(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, tok := range toks {
			got = append(got, m.Piece(tok)...)
		}
		if string(got) != text {
			t.Errorf("detokenize(tokenize(%q)) = %q (tokens %v)", text, got, toks)
		}
		if want := bpeEncode(t, v, text); !equalTokens(toks, want) {
			t.Errorf("tokenize(%q) = %v, reference BPE gives %v", text, toks, want)
		}
	}

	special, err := m.Tokenize("<|im_start|>user\nhi<|im_end|>", false, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(special) < 3 || int(special[0]) != v.IMStart || int(special[len(special)-1]) != v.IMEnd {
		t.Errorf("special tokenization = %v, want %d ... %d", special, v.IMStart, v.IMEnd)
	}
	if !m.IsEOG(backends.Token(v.IMEnd)) {
		t.Error("<|im_end|> is not end of generation")
	}
	if !m.IsEOG(backends.Token(v.EndOfText)) {
		t.Error("<|endoftext|> (eos) is not end of generation")
	}
	if m.IsEOG(backends.Token(v.IMStart)) {
		t.Error("<|im_start|> is end of generation")
	}
	if len(m.Piece(backends.Token(v.IMEnd))) != 0 {
		t.Errorf("control token renders as %q", m.Piece(backends.Token(v.IMEnd)))
	}
	if got, want := string(m.Piece(backends.Token(p.VocabSize-1))), " pad767"; got != want {
		t.Errorf("last padding token renders as %q, want %q", got, want)
	}

	// llama.cpp reads the model's template as ChatML.
	chat, err := llamacpp.ApplyTemplate(info.ChatTemplateSource, []llamacpp.ChatMessage{{Role: "user", Content: "Hello"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"; chat != want {
		t.Errorf("the model's template formats %q, want %q", chat, want)
	}
}

func equalTokens(got []backends.Token, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if int(got[i]) != want[i] {
			return false
		}
	}
	return true
}

// writeAndLoad writes p's model to a temporary file and loads it with
// llama.cpp.
func writeAndLoad(t *testing.T, p Preset) *llamacpp.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.Name+".gguf")
	if err := Write(path, p); err != nil {
		t.Fatal(err)
	}
	m, err := llamacpp.Load(path, llamacpp.LoadParams{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
