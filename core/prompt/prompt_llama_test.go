package prompt

// Tests against llama.cpp itself (backends/llamacpp, cgo): Format must write
// what llama_chat_apply_template writes, byte for byte, and Detect must pick
// the template llama.cpp picks. Build with the Makefile's cgo flags.

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/testkit"
)

func chatMessages(msgs []api.Message) []llamacpp.ChatMessage {
	out := make([]llamacpp.ChatMessage, len(msgs))
	for i, m := range msgs {
		out[i] = llamacpp.ChatMessage{Role: m.Role, Content: m.Content}
	}
	return out
}

// llamaSpec is what to hand llama.cpp for a template: its name, or for
// dots1, which llama.cpp only detects, a source with its marker.
func llamaSpec(t testing.TB, tp Template) string {
	if tp == Dots1 {
		src, err := os.ReadFile(filepath.Join("testdata", "detect", "dots1.jinja"))
		if err != nil {
			t.Fatal(err)
		}
		return string(src)
	}
	return tp.Name()
}

func TestBuiltinNamesMatchLlamaCpp(t *testing.T) {
	var ours []string
	for tp := Template(1); tp < numTemplates; tp++ {
		if specs[tp].llama {
			ours = append(ours, tp.Name())
		}
	}
	theirs := llamacpp.BuiltinTemplates()
	slices.Sort(ours)
	slices.Sort(theirs)
	if !slices.Equal(ours, theirs) {
		t.Errorf("llama.cpp's built-in templates changed:\n ours   %q\n theirs %q", ours, theirs)
	}
}

func TestFormatMatchesLlamaCpp(t *testing.T) {
	for tp := Template(1); tp < numTemplates; tp++ {
		if tp == Raw {
			continue // ours only
		}
		t.Run(tp.Name(), func(t *testing.T) {
			spec := llamaSpec(t, tp)
			for _, c := range conversations {
				for _, gen := range []bool{true, false} {
					want, err := llamacpp.ApplyTemplate(spec, chatMessages(c.msgs), gen)
					if err != nil {
						t.Fatalf("%s gen=%v: llama.cpp: %v", c.name, gen, err)
					}
					got, err := tp.Format(c.msgs, gen)
					if err != nil || got != want {
						t.Errorf("%s gen=%v:\n go    %q (%v)\n llama %q", c.name, gen, got, err, want)
					}
				}
			}
		})
	}
}

// TestModelTemplate loads the synthetic model: its tokenizer.chat_template
// reaches Info().ChatTemplateSource, and Detect+Format writes what llama.cpp
// writes with the template the model carries.
func TestModelTemplate(t *testing.T) {
	m := testkit.LoadModel(t, synth.Tiny())
	src := m.Info().ChatTemplateSource
	if src != synth.ChatTemplate {
		t.Fatalf("ChatTemplateSource = %q, want the synthetic model's template", src)
	}
	if tp := Detect(src); tp != ChatML {
		t.Fatalf("Detect = %v, want chatml", tp)
	}
	for _, c := range conversations {
		want, err := llamacpp.ApplyTemplate(src, chatMessages(c.msgs), true)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := Detect(src).Format(c.msgs, true); got != want {
			t.Errorf("%s:\n go    %q\n model %q", c.name, got, want)
		}
	}
}

// probe tells every template apart: each format renders it differently (a
// system prompt, a reply with spaces to trim, a later turn, a tool turn).
var probe = []api.Message{msg("system", " Be brief. "), msg("user", " Hi there "),
	msg("assistant", " Hello! "), msg("tool", "42"), msg("user", "Bye")}

func TestProbeTellsTemplatesApart(t *testing.T) {
	seen := map[string]Template{}
	for tp := Template(1); tp < numTemplates; tp++ {
		out, _ := tp.Format(probe, true)
		if other, dup := seen[out]; dup {
			t.Errorf("%v and %v format the probe alike: %q", tp, other, out)
		}
		seen[out] = tp
	}
}

// checkDetect compares Detect(src) with llama.cpp's detection. llama.cpp does
// not expose its detection, so it is observed: llama.cpp formats the probe
// with src, and since the probe comes out different in every template (and
// Format matches llama.cpp on every template), equal output means the same
// template was picked.
func checkDetect(t *testing.T, src string) Template {
	t.Helper()
	tp := Detect(src)
	want, err := llamacpp.ApplyTemplate(src, chatMessages(probe), true)
	if tp == Unknown {
		if err == nil {
			t.Errorf("Detect = unknown, but llama.cpp formats it:\n%q", want)
		}
		return tp
	}
	if err != nil {
		t.Errorf("Detect = %v, but llama.cpp knows no template: %v", tp, err)
		return tp
	}
	if got, _ := tp.Format(probe, true); got != want {
		t.Errorf("Detect = %v, but llama.cpp picked another template:\n go    %q\n llama %q", tp, got, want)
	}
	return tp
}

func TestDetectMatchesLlamaCpp(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "detect", "*.jinja"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/detect/*.jinja: %v", err)
	}
	covered := map[Template]bool{}
	for _, p := range files {
		// The file name says the expected template: NAME.jinja or NAME--VARIANT.jinja.
		name, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(p), ".jinja"), "--")
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			tp := checkDetect(t, string(src))
			covered[tp] = true
			if want := byName[name]; tp != want {
				t.Errorf("Detect = %v, want %s", tp, name)
			}
		})
	}
	// Every template llama.cpp can detect from a source has a sample.
	for tp := Template(1); tp < numTemplates; tp++ {
		if !covered[tp] && tp != MistralV7Tekken && tp != Raw {
			t.Errorf("no testdata/detect sample detects as %v", tp)
		}
	}
}

// TestDetectEdgeCases covers names and precedence between families.
func TestDetectEdgeCases(t *testing.T) {
	cases := []struct {
		name, src string
		want      Template
	}{
		{"empty is chatml", "", ChatML},
		{"name chatml", "chatml", ChatML},
		{"name llama2-sys-bos", "llama2-sys-bos", Llama2SysBOS},
		{"name mistral-v7-tekken", "mistral-v7-tekken", MistralV7Tekken},
		{"name seed_oss", "seed_oss", SeedOSS},
		{"name is exact", "Llama3", Unknown},
		{"raw is ours only", "raw", Unknown},
		{"dots1 is not a llama.cpp name", "dots1", Unknown},
		{"mistral prefix is llama2", "mistral", Llama2},
		{"mistral prefix with sys", "mistral-ish <<SYS>>", Llama2Sys},
		{"mistral inside is not a prefix", "my mistral", Unknown},
		{"im_start beats INST", "<|im_start|> [INST] [SYSTEM_PROMPT]", ChatML},
		{"INST beats llama3", "[INST] <|start_header_id|><|end_header_id|>", Llama2},
		{"system prompt marker beats v1", "[INST] [SYSTEM_PROMPT] ' [INST] ' + system_message", MistralV7},
		{"strip beats bos", "[INST] <<SYS>> bos_token + '[INST] content.strip()", Llama2SysStrip},
		{"tekken by double quotes", "[AVAILABLE_TOOLS]\"[INST]\"", MistralV3Tekken},
		{"a space before INST is v1", "[AVAILABLE_TOOLS]\"[INST]\" [INST]", MistralV1},
		{"phi3 beats gemma", "<|assistant|><|end|><start_of_turn>", Phi3},
		{"gemma beats llama3", "<start_of_turn><|start_header_id|><|end_header_id|>", Gemma},
		{"one marker of two", "<|start_header_id|>", Unknown},
		{"rwkv name inside", "{# rwkv-world #}", RWKVWorld},
		{"exaone tool", "[|system|][|assistant|][|endofturn|][|tool|]", Exaone4},
		{"single-quoted HUMAN beats think", "<role>ASSISTANT</role>'HUMAN'\"HUMAN\"<think>", Bailing},
		{"nothing", "{{ messages }}", Unknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if tp := checkDetect(t, c.src); tp != c.want {
				t.Errorf("Detect(%q) = %v, want %v", c.src, tp, c.want)
			}
		})
	}
}

// FuzzFormatLlamaCpp is a differential fuzzer: for any template source and
// messages, Detect+Format and llama.cpp agree (both fail, or write the same
// bytes). Inputs with NUL bytes are skipped: llama.cpp reads C strings.
func FuzzFormatLlamaCpp(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, src, data string, gen bool) {
		if strings.ContainsRune(src, 0) || strings.ContainsRune(data, 0) {
			t.Skip()
		}
		msgs := decodeMessages(data)
		want, werr := llamacpp.ApplyTemplate(src, chatMessages(msgs), gen)
		got, err := Detect(src).Format(msgs, gen)
		if (err != nil) != (werr != nil) || got != want {
			t.Fatalf("Detect(%q) = %v:\n go    %q (%v)\n llama %q (%v)", src, Detect(src), got, err, want, werr)
		}
	})
}
