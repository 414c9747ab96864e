package synth

import "fmt"

// Chat is the chat family a synthetic model's template and control tokens
// belong to.
type Chat string

// The chat families.
const (
	// ChatML is the default: ChatTemplate, <|endoftext|> as BOS and EOS.
	ChatML Chat = ""
	// ChatLlama3 is Llama 3.1's header turns (core/prompt detects Llama3),
	// with its markers as control tokens: <|begin_of_text|> is BOS,
	// <|eot_id|> EOS, and <|python_tag|> opens a tool call.
	ChatLlama3 Chat = "llama3"
	// ChatMistral is Mistral's [INST] turns with tools (core/prompt
	// detects MistralV3), with [INST], [/INST], [TOOL_CALLS],
	// [AVAILABLE_TOOLS], [/AVAILABLE_TOOLS], [TOOL_RESULTS] and
	// [/TOOL_RESULTS] as control tokens: <s> is BOS, </s> EOS.
	ChatMistral Chat = "mistral"
)

// Llama3ChatTemplate is the tokenizer.chat_template of ChatLlama3 models: a
// short template in the shape of Llama 3.1's.
const Llama3ChatTemplate = "{{- bos_token }}{% for message in messages %}" +
	"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}" +
	"{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"

// MistralChatTemplate is the tokenizer.chat_template of ChatMistral models:
// a short template in the shape of Mistral v3's.
const MistralChatTemplate = "{{- bos_token }}{% if tools %}{{ '[AVAILABLE_TOOLS]' + tools | tojson + '[/AVAILABLE_TOOLS]' }}{% endif %}" +
	"{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST]' + message['content'] + '[/INST]' }}" +
	"{% elif message['role'] == 'tool' %}{{ '[TOOL_RESULTS]' + message['content'] + '[/TOOL_RESULTS]' }}" +
	"{% elif message['tool_calls'] %}{{ '[TOOL_CALLS]' + message['tool_calls'] | tojson + eos_token }}" +
	"{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"

// chatSpec is what a family adds to the vocabulary and metadata.
type chatSpec struct {
	template string
	control  []string // control tokens after the ChatML ones
	bos, eos string   // their texts
	addBOS   bool
}

func (c Chat) spec() (chatSpec, error) {
	switch c {
	case ChatML:
		return chatSpec{template: ChatTemplate, bos: EndOfText, eos: EndOfText}, nil
	case ChatLlama3:
		return chatSpec{
			template: Llama3ChatTemplate,
			control:  []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"},
			bos:      "<|begin_of_text|>", eos: "<|eot_id|>", addBOS: true,
		}, nil
	case ChatMistral:
		return chatSpec{
			template: MistralChatTemplate,
			control: []string{"<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
				"[TOOL_RESULTS]", "[/TOOL_RESULTS]"},
			bos: "<s>", eos: "</s>", addBOS: true,
		}, nil
	}
	return chatSpec{}, fmt.Errorf("synth: unknown chat family %q", string(c))
}
