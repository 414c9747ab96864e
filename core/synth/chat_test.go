package synth

import (
	"strings"
	"testing"
)

func TestChatValidate(t *testing.T) {
	p := Tiny()
	p.Chat = "gemma"
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "gemma") {
		t.Errorf("unknown family: %v", err)
	}
	p = TinyChat(ChatMistral)
	p.VocabSize = 256 + p.Merges + 3 + 8 // one short of Mistral's 9 control tokens
	if err := p.Validate(); err == nil {
		t.Error("a vocabulary without room for the control tokens validates")
	}
	if _, err := NewVocab(p.VocabSize, p.Merges, IMEnd); err == nil {
		t.Error("a control token given twice is accepted")
	}
}

// TestChatMetadata checks the tokenizer metadata of each family: BOS and
// EOS are its tokens, and its markers are control tokens.
func TestChatMetadata(t *testing.T) {
	for _, c := range []Chat{ChatML, ChatLlama3, ChatMistral} {
		p := TinyChat(c)
		kvs, err := Metadata(p)
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := c.spec()
		m := map[string]any{}
		for _, kv := range kvs {
			m[kv.Key] = kv.Value
		}
		tokens := m["tokenizer.ggml.tokens"].([]string)
		types := m["tokenizer.ggml.token_type"].([]int32)
		if len(tokens) != p.VocabSize {
			t.Errorf("%s: %d tokens", p.Name, len(tokens))
		}
		if got := tokens[m["tokenizer.ggml.bos_token_id"].(uint32)]; got != spec.bos {
			t.Errorf("%s: BOS %q, want %q", p.Name, got, spec.bos)
		}
		if got := tokens[m["tokenizer.ggml.eos_token_id"].(uint32)]; got != spec.eos {
			t.Errorf("%s: EOS %q, want %q", p.Name, got, spec.eos)
		}
		if m["tokenizer.ggml.add_bos_token"] != spec.addBOS || m["tokenizer.chat_template"] != spec.template {
			t.Errorf("%s: add_bos_token %v, template %q", p.Name, m["tokenizer.ggml.add_bos_token"], m["tokenizer.chat_template"])
		}
		for _, text := range append([]string{EndOfText, IMStart, IMEnd}, spec.control...) {
			n := 0
			for id, tok := range tokens {
				if tok == text {
					n++
					if types[id] != TokenTypeControl {
						t.Errorf("%s: %s is type %d", p.Name, text, types[id])
					}
				}
			}
			if n != 1 {
				t.Errorf("%s: %s occurs %d times", p.Name, text, n)
			}
		}
	}
}
