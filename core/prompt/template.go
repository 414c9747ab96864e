package prompt

import (
	"errors"
	"strings"

	"github.com/llorch/llorch/core/api"
)

// ErrUnknownTemplate is returned by Format on the Unknown template.
var ErrUnknownTemplate = errors.New("prompt: unknown chat template")

// Template is a chat format. The zero value is Unknown. Templates are
// comparable; Name gives the llama.cpp name.
type Template uint8

// The templates, named after llama.cpp's built-in templates.
const (
	Unknown Template = iota

	ChatML // chatml: <|im_start|>role\n...<|im_end|> (Qwen, Yi, most fine-tunes)

	Llama2         // llama2: [INST] ... [/INST], system text inlined
	Llama2Sys      // llama2-sys: system in <<SYS>> ... <</SYS>>
	Llama2SysBOS   // llama2-sys-bos: <s> before each later [INST]
	Llama2SysStrip // llama2-sys-strip: contents trimmed
	Llama3         // llama3: <|start_header_id|>role<|end_header_id|>
	Llama4         // llama4: <|header_start|>role<|header_end|>

	MistralV1       // mistral-v1: " [INST] ... [/INST]"
	MistralV3       // mistral-v3: "[INST] ...[/INST]", assistant trimmed
	MistralV3Tekken // mistral-v3-tekken: no spaces around [INST]
	MistralV7       // mistral-v7: [SYSTEM_PROMPT] and [INST] with spaces
	MistralV7Tekken // mistral-v7-tekken: the same without spaces

	Phi3    // phi3: <|role|>\n...<|end|>
	Phi4    // phi4: ChatML with <|im_sep|>
	Gemma   // gemma: <start_of_turn>user|model, system merged into the next user turn
	Falcon3 // falcon3
	Zephyr  // zephyr
	Monarch // monarch
	Orion   // orion

	OpenChat   // openchat
	Vicuna     // vicuna
	VicunaOrca // vicuna-orca
	DeepSeek   // deepseek (coder)
	DeepSeek2  // deepseek2
	DeepSeek3  // deepseek3
	CommandR   // command-r
	ChatGLM3   // chatglm3
	ChatGLM4   // chatglm4
	GLMEdge    // glmedge
	MiniCPM    // minicpm
	Exaone3    // exaone3
	Exaone4    // exaone4
	RWKVWorld  // rwkv-world
	Granite    // granite
	GigaChat   // gigachat
	Megrez     // megrez
	Yandex     // yandex

	Bailing      // bailing
	BailingThink // bailing-think
	Bailing2     // bailing2
	SmolVLM      // smolvlm
	Dots1        // dots1 (detected by llama.cpp, not one of its names)
	HunyuanMoE   // hunyuan-moe
	GPTOSS       // gpt-oss (OpenAI Harmony)
	HunyuanDense // hunyuan-dense
	KimiK2       // kimi-k2
	SeedOSS      // seed_oss
	Grok2        // grok-2
	PanguEmbed   // pangu-embedded

	Raw // raw: contents only, no markup (not a llama.cpp format)

	numTemplates
)

// formatFunc writes msgs in one format.
type formatFunc func(b *strings.Builder, msgs []api.Message, gen bool)

type spec struct {
	name string
	// llama is set when llama.cpp knows the name (Detect accepts it verbatim).
	llama  bool
	format formatFunc
}

var specs = [numTemplates]spec{
	Unknown:         {"", false, nil},
	ChatML:          {"chatml", true, formatChatML},
	Llama2:          {"llama2", true, llama2Format(false, false, false)},
	Llama2Sys:       {"llama2-sys", true, llama2Format(true, false, false)},
	Llama2SysBOS:    {"llama2-sys-bos", true, llama2Format(true, true, false)},
	Llama2SysStrip:  {"llama2-sys-strip", true, llama2Format(true, false, true)},
	Llama3:          {"llama3", true, headerFormat("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>")},
	Llama4:          {"llama4", true, headerFormat("<|header_start|>", "<|header_end|>\n\n", "<|eot|>")},
	MistralV1:       {"mistral-v1", true, mistralFormat(" ", " ", false)},
	MistralV3:       {"mistral-v3", true, mistralFormat("", " ", true)},
	MistralV3Tekken: {"mistral-v3-tekken", true, mistralFormat("", "", false)},
	MistralV7:       {"mistral-v7", true, mistralV7Format(" ")},
	MistralV7Tekken: {"mistral-v7-tekken", true, mistralV7Format("")},
	Phi3:            {"phi3", true, formatPhi3},
	Phi4:            {"phi4", true, formatPhi4},
	Gemma:           {"gemma", true, formatGemma},
	Falcon3:         {"falcon3", true, formatFalcon3},
	Zephyr:          {"zephyr", true, formatZephyr},
	Monarch:         {"monarch", true, formatMonarch},
	Orion:           {"orion", true, formatOrion},
	OpenChat:        {"openchat", true, formatOpenChat},
	Vicuna:          {"vicuna", true, vicunaFormat(false)},
	VicunaOrca:      {"vicuna-orca", true, vicunaFormat(true)},
	DeepSeek:        {"deepseek", true, formatDeepSeek},
	DeepSeek2:       {"deepseek2", true, formatDeepSeek2},
	DeepSeek3:       {"deepseek3", true, formatDeepSeek3},
	CommandR:        {"command-r", true, formatCommandR},
	ChatGLM3:        {"chatglm3", true, formatChatGLM3},
	ChatGLM4:        {"chatglm4", true, formatChatGLM4},
	GLMEdge:         {"glmedge", true, formatGLMEdge},
	MiniCPM:         {"minicpm", true, formatMiniCPM},
	Exaone3:         {"exaone3", true, exaoneFormat(false)},
	Exaone4:         {"exaone4", true, exaoneFormat(true)},
	RWKVWorld:       {"rwkv-world", true, formatRWKVWorld},
	Granite:         {"granite", true, formatGranite},
	GigaChat:        {"gigachat", true, formatGigaChat},
	Megrez:          {"megrez", true, formatMegrez},
	Yandex:          {"yandex", true, formatYandex},
	Bailing:         {"bailing", true, bailingFormat("")},
	BailingThink:    {"bailing-think", true, bailingFormat("<think>")},
	Bailing2:        {"bailing2", true, formatBailing2},
	SmolVLM:         {"smolvlm", true, formatSmolVLM},
	Dots1:           {"dots1", false, formatDots1},
	HunyuanMoE:      {"hunyuan-moe", true, formatHunyuanMoE},
	GPTOSS:          {"gpt-oss", true, formatGPTOSS},
	HunyuanDense:    {"hunyuan-dense", true, formatHunyuanDense},
	KimiK2:          {"kimi-k2", true, formatKimiK2},
	SeedOSS:         {"seed_oss", true, formatSeedOSS},
	Grok2:           {"grok-2", true, formatGrok2},
	PanguEmbed:      {"pangu-embedded", true, formatPanguEmbed},
	Raw:             {"raw", false, formatRaw},
}

// byName maps every template's name to it; Detect accepts the llama.cpp ones.
var byName = func() map[string]Template {
	m := make(map[string]Template, numTemplates)
	for t := Template(1); t < numTemplates; t++ {
		m[specs[t].name] = t
	}
	return m
}()

// Name is the template's name; "" for Unknown.
func (t Template) Name() string {
	if t >= numTemplates {
		return ""
	}
	return specs[t].name
}

// String is the name, or "unknown".
func (t Template) String() string {
	if n := t.Name(); n != "" {
		return n
	}
	return "unknown"
}

// Format renders msgs as a prompt. addGenerationPrompt appends the start of an
// assistant turn, for the formats that have one. Only Unknown fails.
func (t Template) Format(msgs []api.Message, addGenerationPrompt bool) (string, error) {
	if t == Unknown || t >= numTemplates {
		return "", ErrUnknownTemplate
	}
	var b strings.Builder
	n := 64
	for _, m := range msgs {
		n += len(m.Role) + len(m.Content) + 32
	}
	b.Grow(n)
	specs[t].format(&b, msgs, addGenerationPrompt)
	return b.String(), nil
}
