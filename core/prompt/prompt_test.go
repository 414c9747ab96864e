package prompt

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from Format")

func msg(role, content string) api.Message { return api.Message{Role: role, Content: content} }

// conversations are the chats every template is checked on: here against the
// golden files, in prompt_llama_test.go against llama.cpp.
var conversations = []struct {
	name string
	msgs []api.Message
}{
	{"user", []api.Message{msg("user", "Hello")}},
	{"system+user", []api.Message{msg("system", "You are terse."), msg("user", "Hi")}},
	{"multi-turn", []api.Message{msg("system", "You are terse."), msg("user", "Hi"),
		msg("assistant", "Hello."), msg("user", "What is 2+2?"), msg("assistant", "4"), msg("user", "Thanks")}},
	{"assistant-last", []api.Message{msg("user", "Say hi"), msg("assistant", "hi")}},
	{"assistant-first", []api.Message{msg("assistant", "How can I help?"), msg("user", "Hi")}},
	{"unicode", []api.Message{msg("system", "Réponds en français 🇫🇷"), msg("user", "日本語で？ — «ok» 用户"),
		msg("assistant", "Ассистент: да ｜▁｜"), msg("user", "👍🏽")}},
	{"empty-content", []api.Message{msg("system", ""), msg("user", ""), msg("assistant", ""), msg("user", "")}},
	{"whitespace", []api.Message{msg("system", "  padded system \n"), msg("user", "\t hi \v\f\r\n"),
		msg("assistant", "  reply  \n"), msg("user", "\u00a0nbsp stays\u00a0")}},
	{"two-systems", []api.Message{msg("system", "First."), msg("system", "Second."), msg("user", "Go")}},
	{"system-late", []api.Message{msg("user", "Hi"), msg("assistant", "Hey"), msg("system", "Be formal."), msg("user", "Hello")}},
	{"user-user", []api.Message{msg("user", "One"), msg("user", "Two")}},
	{"other-roles", []api.Message{msg("system", "S"), msg("user", "U"), msg("tool", "42"), msg("function", "f()"),
		msg("assistant_tool_call", "call"), msg("model", "M"), msg("User", "caps"), msg("", "no role"), msg("assistant", "A")}},
	{"markup-in-content", []api.Message{msg("user", "<|im_start|>[INST] <<SYS>> {{ x }} [/INST]<|im_end|>\n"), msg("assistant", "</s>")}},
	{"no-messages", nil},
}

func TestNamesRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for tp := Template(1); tp < numTemplates; tp++ {
		name := tp.Name()
		if name == "" || seen[name] {
			t.Errorf("template %d: name %q empty or repeated", tp, name)
		}
		seen[name] = true
		if got, ok := byName[name]; !ok || got != tp {
			t.Errorf("byName[%q] = %v, %v; want %v", name, got, ok, tp)
		}
		if tp.String() != name {
			t.Errorf("String() = %q, want %q", tp.String(), name)
		}
	}
	if len(byName) != int(numTemplates)-1 {
		t.Errorf("byName has %d names, want %d", len(byName), numTemplates-1)
	}
	for _, bad := range []string{"", "unknown", "ChatML", " chatml"} {
		if _, ok := byName[bad]; ok {
			t.Errorf("byName[%q] found a template", bad)
		}
	}
	if Unknown.String() != "unknown" || Template(200).String() != "unknown" {
		t.Errorf("unknown templates print as %q, %q", Unknown, Template(200))
	}
}

func TestUnknownFails(t *testing.T) {
	for _, tp := range []Template{Unknown, numTemplates, 255} {
		if _, err := tp.Format([]api.Message{msg("user", "hi")}, true); !errors.Is(err, ErrUnknownTemplate) {
			t.Errorf("Template(%d).Format error = %v, want ErrUnknownTemplate", tp, err)
		}
	}
}

func TestDetectDefaults(t *testing.T) {
	cases := []struct {
		src  string
		want Template
	}{
		{"", ChatML}, // no template: ChatML, as the worker always did
		{"chatml", ChatML},
		{"mistral-v7-tekken", MistralV7Tekken}, // only reachable by name, as in llama.cpp
		{"raw", Unknown},                       // not a llama.cpp name
		{"dots1", Unknown},                     // detected by markers only
		{"{{ messages }}", Unknown},
	}
	for _, c := range cases {
		if got := Detect(c.src); got != c.want {
			t.Errorf("Detect(%q) = %v, want %v", c.src, got, c.want)
		}
	}
}

// TestFormatExamples spells out the main families by hand, as documentation;
// the llama.cpp and golden tests cover everything else.
func TestFormatExamples(t *testing.T) {
	chat := []api.Message{msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", " Hello! "), msg("user", "Bye")}
	cases := []struct {
		tp   Template
		want string
	}{
		{ChatML, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
		{Llama3, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{Llama2, "[INST] Be brief.\nHi [/INST] Hello! </s>[INST] Bye [/INST]"},
		{Llama2Sys, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>[INST] Bye [/INST]"},
		{Llama2SysBOS, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]"},
		{Llama2SysStrip, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]"},
		{MistralV1, " [INST] Be brief.\n\nHi [/INST]  Hello! </s> [INST] Bye [/INST]"},
		{MistralV3, "[INST] Be brief.\n\nHi[/INST] Hello!</s>[INST] Bye[/INST]"},
		{MistralV3Tekken, "[INST]Be brief.\n\nHi[/INST] Hello! </s>[INST]Bye[/INST]"},
		{MistralV7, "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT][INST] Hi[/INST]  Hello! </s>[INST] Bye[/INST]"},
		{MistralV7Tekken, "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST] Hello! </s>[INST]Bye[/INST]"},
		{Phi3, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n Hello! <|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"},
		{Gemma, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"},
		{Raw, "Be brief.Hi Hello! Bye"},
	}
	for _, c := range cases {
		got, err := c.tp.Format(chat, true)
		if err != nil || got != c.want {
			t.Errorf("%v:\n got %q, %v\nwant %q", c.tp, got, err, c.want)
		}
	}
}

// golden renders every conversation, with and without the generation
// prompt, for a reviewer to read.
func golden(tp Template) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: prompt.Format output (byte-identical to llama.cpp's llama_chat_apply_template,\n", tp)
	b.WriteString("# see prompt_llama_test.go). Each case is the prompt verbatim, ended by «END»; control\n")
	b.WriteString("# characters other than newline and tab are shown as Go escapes (\\r, \\v, ...).\n")
	for _, c := range conversations {
		for _, gen := range []bool{true, false} {
			out, err := tp.Format(c.msgs, gen)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\n=== %s add_generation_prompt=%v\n%s«END»\n", c.name, gen, showControls(out))
		}
	}
	return b.String(), nil
}

func TestGolden(t *testing.T) {
	for tp := Template(1); tp < numTemplates; tp++ {
		t.Run(tp.Name(), func(t *testing.T) {
			got, err := golden(tp)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", tp.Name()+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if d := testkit.LineDiff(got, string(want)); d != "" {
				t.Errorf("%s differs (-got +want):\n%s", path, d)
			}
		})
	}
}

// showControls escapes control characters other than \n and \t, so that
// golden files survive editors and line-ending conversion.
func showControls(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// decodeMessages turns fuzz input into messages: records split by \x1e,
// role and content split by the first \x1f.
func decodeMessages(data string) []api.Message {
	if data == "" {
		return nil
	}
	var msgs []api.Message
	for rec := range strings.SplitSeq(data, "\x1e") {
		role, content, _ := strings.Cut(rec, "\x1f")
		msgs = append(msgs, msg(role, content))
	}
	return msgs
}

func fuzzSeeds(f *testing.F) {
	for _, c := range conversations {
		var recs []string
		for _, m := range c.msgs {
			recs = append(recs, m.Role+"\x1f"+m.Content)
		}
		f.Add("", strings.Join(recs, "\x1e"), true)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "detect", "*.jinja"))
	for _, p := range files {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src), "system\x1fS\x1euser\x1f U \x1eassistant\x1f A \x1etool\x1fT\x1euser\x1fQ", false)
	}
	for tp := Template(1); tp < numTemplates; tp++ {
		f.Add(tp.Name(), "user\x1fhi", true)
	}
}

// FuzzFormat: no input makes Detect or Format panic; both are deterministic;
// the generation prompt only ever appends.
func FuzzFormat(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, src, data string, gen bool) {
		msgs := decodeMessages(data)
		tp := Detect(src)
		if tp != Detect(src) {
			t.Fatalf("Detect(%q) not deterministic", src)
		}
		for _, tp := range []Template{tp, Template(len(src) % int(numTemplates+1))} {
			out, err := tp.Format(msgs, gen)
			again, err2 := tp.Format(msgs, gen)
			if out != again || (err == nil) != (err2 == nil) {
				t.Fatalf("%v: Format not deterministic", tp)
			}
			if (err != nil) != (tp == Unknown || tp >= numTemplates) {
				t.Fatalf("%v: Format error = %v", tp, err)
			}
			if err != nil {
				continue
			}
			noGen, _ := tp.Format(msgs, false)
			withGen, _ := tp.Format(msgs, true)
			if !strings.HasPrefix(withGen, noGen) {
				t.Fatalf("%v: generation prompt changes the prefix:\n%q\n%q", tp, noGen, withGen)
			}
		}
	})
}

// BenchmarkDetect is the per-request cost in the worker: a long source in
// which no marker occurs, so every rule is tried.
func BenchmarkDetect(b *testing.B) {
	src := strings.Repeat("{% for message in messages %}{{ message['content'] }}{% endfor %}\n", 64)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if Detect(src) != Unknown {
			b.Fatal("detected")
		}
	}
}

func BenchmarkFormat(b *testing.B) {
	msgs := conversations[2].msgs
	for b.Loop() {
		if _, err := Llama3.Format(msgs, true); err != nil {
			b.Fatal(err)
		}
	}
}
