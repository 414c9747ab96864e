package openai

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// A token's chunk made from its template is byte for byte what
// encoding/json writes for the whole chunk, whatever the text.
func TestChunkTemplateMatchesEncodingJSON(t *testing.T) {
	texts := []string{"", "hello", " world", `say "hi"`, `back\\slash`, "<b>&amp;</b>", "tab\there", "line\nbreak",
		"\x00\x1f", "héllo", "日本", "\u2028\u2029", "\xff\xfe bad utf-8", textMark, "🙂"}
	usage := optUsage{set: true}
	for _, model := range []string{"m", `we"ird<model>`} {
		for _, text := range texts {
			mark, content := textMark, text
			chat := func(c *string) any {
				return &chatChunk{ID: "chatcmpl-1", Object: "chat.completion.chunk", Created: 7, Model: model,
					SystemFingerprint: "fp", Usage: usage, Choices: []chunkChoice{{Index: 1, Delta: delta{Content: c}}}}
			}
			compl := func(s string) any {
				return &textCompletion{ID: "cmpl-1", Object: "text_completion", Created: 7, Model: model,
					SystemFingerprint: "fp", Choices: []textChoice{{Index: 0, Text: s}}}
			}
			for name, c := range map[string]struct{ tpl, want any }{
				"chat":        {chat(&mark), chat(&content)},
				"completions": {compl(textMark), compl(text)},
			} {
				tp := newChunkTemplate(c.tpl, model)
				got := append(api.AppendJSONString(append([]byte{}, tp.head...), text), tp.tail...)
				want, err := json.Marshal(c.want)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s %q in %q:\n got %s\nwant %s", name, text, model, got, want)
				}
			}
		}
	}
}
