package prompt

import "strings"

// Detect picks the template for a chat template: a llama.cpp template name
// ("llama3", "mistral-v7", ...) or a Jinja source such as a GGUF's
// tokenizer.chat_template. Like llama.cpp's detection it looks for marker
// strings, in llama.cpp's order (the first family whose markers occur wins);
// it never runs the Jinja.
//
// "" gives ChatML, llama.cpp's fallback for a model without a template. A
// source with no known marker gives Unknown.
func Detect(src string) Template {
	if src == "" {
		return ChatML
	}
	if t, ok := byName[src]; ok && specs[t].llama {
		return t
	}
	has := func(subs ...string) bool {
		for _, s := range subs {
			if !strings.Contains(src, s) {
				return false
			}
		}
		return true
	}
	switch {
	case has("<|im_start|>"):
		switch {
		case has("<|im_sep|>"):
			return Phi4
		case has("<end_of_utterance>"):
			return SmolVLM // <|im_start|> is its BOS; the turns are not ChatML
		}
		return ChatML
	case strings.HasPrefix(src, "mistral") || has("[INST]"):
		return detectInst(has)
	case has("<|assistant|>", "<|end|>"):
		return Phi3
	case has("[gMASK]<sop>"):
		return ChatGLM4
	case has("<|assistant|>", "<|user|>"):
		if has("</s>") {
			return Falcon3
		}
		return GLMEdge
	case has("<|{{ item['role'] }}|>", "<|begin_of_image|>"):
		return GLMEdge
	case has("<|user|>", "<|endoftext|>"):
		return Zephyr
	case has("bos_token + message['role']"):
		return Monarch
	case has("<start_of_turn>"):
		return Gemma
	case has(`'\n\nAssistant: ' + eos_token`):
		return Orion
	case has("GPT4 Correct "):
		return OpenChat
	case has("USER: ", "ASSISTANT: "):
		if has("SYSTEM: ") {
			return VicunaOrca
		}
		return Vicuna
	case has("### Instruction:", "<|EOT|>"):
		return DeepSeek
	case has("<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"):
		return CommandR
	case has("<|start_header_id|>", "<|end_header_id|>"):
		return Llama3
	case has("[gMASK]sop"):
		return ChatGLM3
	case has("<用户>"):
		return MiniCPM
	case has("'Assistant: ' + message['content'] + eos_token"):
		return DeepSeek2
	case has(deepseekAssistant, deepseekUser, deepseekEOS):
		return DeepSeek3
	case has("[|system|]", "[|assistant|]", "[|endofturn|]"):
		if has("[|tool|]") {
			return Exaone4
		}
		return Exaone3
	case has("rwkv-world") || has(`{{- 'User: ' + message['content']|trim + '\n\n' -}}`):
		return RWKVWorld
	case has("<|start_of_role|>"):
		return Granite
	case has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"):
		return GigaChat
	case has("<|role_start|>"):
		return Megrez
	case has(" Ассистент:"):
		return Yandex
	case has("<role>ASSISTANT</role>", "'HUMAN'"):
		return Bailing
	case has("<role>ASSISTANT</role>", `"HUMAN"`, "<think>"):
		return BailingThink
	case has("<role>ASSISTANT</role>", "<role>HUMAN</role>", "<|role_end|>"):
		return Bailing2
	case has("<|header_start|>", "<|header_end|>"):
		return Llama4
	case has("<|endofuserprompt|>"):
		return Dots1
	case has("<|extra_0|>", "<|extra_4|>"):
		return HunyuanMoE
	case has("<|start|>", "<|channel|>"):
		return GPTOSS
	case has(hunyuanAssistant, hunyuanSystemEnd):
		return HunyuanDense
	case has("<|im_assistant|>assistant<|im_middle|>"):
		return KimiK2
	case has("<seed:bos>"):
		return SeedOSS
	case has("'Assistant: '  + message['content'] + '<|separator|>"):
		return Grok2
	case has(panguSystem + panguClose):
		return PanguEmbed
	}
	return Unknown
}

// detectInst tells apart the [INST] families: Mistral v7 by its system
// prompt marker, the official Mistral v1/v3/v3-tekken templates by theirs,
// and otherwise Llama 2 and its system-prompt variants.
func detectInst(has func(...string) bool) Template {
	switch {
	case has("[SYSTEM_PROMPT]"):
		return MistralV7
	case has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]"):
		switch {
		case has(" [INST]"):
			return MistralV1
		case has(`"[INST]"`):
			return MistralV3Tekken
		}
		return MistralV3
	case has("content.strip()"):
		return Llama2SysStrip
	case has("bos_token + '[INST]"):
		return Llama2SysBOS
	case has("<<SYS>>"):
		return Llama2Sys
	}
	return Llama2
}
