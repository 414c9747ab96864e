package prompt

import (
	"strings"

	"github.com/llorch/llorch/core/api"
)

// Markers with look-alike characters: ｜ is U+FF5C (fullwidth vertical line),
// ▁ is U+2581 (SentencePiece's space), ： is U+FF1A (fullwidth colon).
const (
	deepseekUser      = "<\uff5cUser\uff5c>"
	deepseekAssistant = "<\uff5cAssistant\uff5c>"
	deepseekEOS       = "<\uff5cend\u2581of\u2581sentence\uff5c>"
	hunyuanUser       = "<\uff5chy_User\uff5c>"
	hunyuanAssistant  = "<\uff5chy_Assistant\uff5c>"
	hunyuanSystemEnd  = "<\uff5chy_place\u2581holder\u2581no\u25813\uff5c>"
	hunyuanTurnEnd    = "<\uff5chy_place\u2581holder\u2581no\u25812\uff5c>"
	panguOpen         = "[unused9]"
	panguClose        = "[unused10]"
	panguSystem       = panguOpen + "系统\uff1a"
	panguUser         = panguOpen + "用户\uff1a"
	panguAssistant    = panguOpen + "助手\uff1a"
	panguTool         = panguOpen + "工具\uff1a"
	panguFunction     = panguOpen + "方法\uff1a"
)

// asciiSpace is what C's isspace accepts in the "C" locale, which is what
// llama.cpp trims.
const asciiSpace = " \t\n\v\f\r"

func trim(s string) string { return strings.Trim(s, asciiSpace) }

// Trim removes ASCII white space at both ends, as llama.cpp's templates
// trim (C's isspace in the "C" locale): formats that build on these write
// the same bytes.
func Trim(s string) string { return trim(s) }

// put writes the parts in order.
func put(b *strings.Builder, parts ...string) {
	for _, p := range parts {
		b.WriteString(p)
	}
}

// when returns s if cond holds, else "".
func when(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}

// asciiUpper upper-cases ASCII letters only, as C's toupper does in the "C" locale.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func formatRaw(b *strings.Builder, msgs []api.Message, _ bool) {
	for _, m := range msgs {
		b.WriteString(m.Content)
	}
}

func formatChatML(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|im_start|>", m.Role, "\n", m.Content, "<|im_end|>\n")
	}
	put(b, when(gen, "<|im_start|>assistant\n"))
}

// llama2Format: a conversation is a run of [INST] blocks, each closed by an
// assistant reply. sys wraps system text in <<SYS>>; bos puts <s> before every
// [INST] but the first; strip trims every content.
func llama2Format(sys, bos, strip bool) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, _ bool) {
		b.WriteString("[INST] ")
		open := true
		for _, m := range msgs {
			c := m.Content
			if strip {
				c = trim(c)
			}
			if !open {
				put(b, when(bos, "<s>"), "[INST] ")
				open = true
			}
			switch m.Role {
			case "system":
				if sys {
					put(b, "<<SYS>>\n", c, "\n<</SYS>>\n\n")
				} else {
					put(b, c, "\n")
				}
			case "user":
				put(b, c, " [/INST]")
			default:
				put(b, c, "</s>")
				open = false
			}
		}
	}
}

// headerFormat is Llama 3's shape (and Llama 4's, with other markers):
// open role close trimmed-content end.
func headerFormat(open, close, end string) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, gen bool) {
		for _, m := range msgs {
			put(b, open, m.Role, close, trim(m.Content), end)
		}
		if gen {
			put(b, open, "assistant", close)
		}
	}
}

// mistralFormat is Mistral v1/v3/v3-tekken: lead goes before [INST] and
// [/INST], pad after [INST] and before a reply; trimReply trims replies.
func mistralFormat(lead, pad string, trimReply bool) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, _ bool) {
		open := false
		for _, m := range msgs {
			if !open {
				put(b, lead, "[INST]", pad)
				open = true
			}
			switch m.Role {
			case "system":
				put(b, m.Content, "\n\n")
			case "user":
				put(b, m.Content, lead, "[/INST]")
			default:
				c := m.Content
				if trimReply {
					c = trim(c)
				}
				put(b, pad, c, "</s>")
				open = false
			}
		}
	}
}

// mistralV7Format is Mistral v7 (pad " ") and v7-tekken (pad "").
func mistralV7Format(pad string) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, _ bool) {
		for _, m := range msgs {
			switch m.Role {
			case "system":
				put(b, "[SYSTEM_PROMPT]", pad, m.Content, "[/SYSTEM_PROMPT]")
			case "user":
				put(b, "[INST]", pad, m.Content, "[/INST]")
			default:
				put(b, pad, m.Content, "</s>")
			}
		}
	}
}

func formatPhi3(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n", m.Content, "<|end|>\n")
	}
	put(b, when(gen, "<|assistant|>\n"))
}

func formatPhi4(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|im_start|>", m.Role, "<|im_sep|>", m.Content, "<|im_end|>")
	}
	put(b, when(gen, "<|im_start|>assistant<|im_sep|>"))
}

// formatGemma: Gemma has no system turn; system text (trimmed, concatenated)
// opens the next turn that is not the model's.
func formatGemma(b *strings.Builder, msgs []api.Message, gen bool) {
	system := ""
	for _, m := range msgs {
		if m.Role == "system" {
			system += trim(m.Content)
			continue
		}
		role := m.Role
		if role == "assistant" {
			role = "model"
		}
		put(b, "<start_of_turn>", role, "\n")
		if system != "" && role != "model" {
			put(b, system, "\n\n")
			system = ""
		}
		put(b, trim(m.Content), "<end_of_turn>\n")
	}
	put(b, when(gen, "<start_of_turn>model\n"))
}

func formatFalcon3(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n", m.Content, "\n")
	}
	put(b, when(gen, "<|assistant|>\n"))
}

func formatZephyr(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n", m.Content, "<|endoftext|>\n")
	}
	put(b, when(gen, "<|assistant|>\n"))
}

func formatMonarch(b *strings.Builder, msgs []api.Message, gen bool) {
	for i, m := range msgs {
		put(b, when(i > 0, "<s>"), m.Role, "\n", m.Content, "</s>\n")
	}
	put(b, when(gen, "<s>assistant\n"))
}

// formatOrion: system text opens the next user turn; the assistant prefix is
// part of every user turn.
func formatOrion(b *strings.Builder, msgs []api.Message, _ bool) {
	system := ""
	for _, m := range msgs {
		switch m.Role {
		case "system":
			system += m.Content
		case "user":
			b.WriteString("Human: ")
			if system != "" {
				put(b, system, "\n\n")
				system = ""
			}
			put(b, m.Content, "\n\nAssistant: </s>")
		default:
			put(b, m.Content, "</s>")
		}
	}
}

func formatOpenChat(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		if m.Role == "system" {
			put(b, m.Content, "<|end_of_turn|>")
			continue
		}
		role := m.Role
		if role != "" {
			role = asciiUpper(role[:1]) + role[1:]
		}
		put(b, "GPT4 Correct ", role, ": ", m.Content, "<|end_of_turn|>")
	}
	put(b, when(gen, "GPT4 Correct Assistant:"))
}

func vicunaFormat(orca bool) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, gen bool) {
		for _, m := range msgs {
			switch m.Role {
			case "system":
				if orca {
					put(b, "SYSTEM: ", m.Content, "\n")
				} else {
					put(b, m.Content, "\n\n")
				}
			case "user":
				put(b, "USER: ", m.Content, "\n")
			case "assistant":
				put(b, "ASSISTANT: ", m.Content, "</s>\n")
			}
		}
		put(b, when(gen, "ASSISTANT:"))
	}
}

func formatDeepSeek(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			b.WriteString(m.Content)
		case "user":
			put(b, "### Instruction:\n", m.Content, "\n")
		case "assistant":
			put(b, "### Response:\n", m.Content, "\n<|EOT|>\n")
		}
	}
	put(b, when(gen, "### Response:\n"))
}

func formatDeepSeek2(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, m.Content, "\n\n")
		case "user":
			put(b, "User: ", m.Content, "\n\n")
		case "assistant":
			put(b, "Assistant: ", m.Content, deepseekEOS)
		}
	}
	put(b, when(gen, "Assistant:"))
}

func formatDeepSeek3(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, m.Content, "\n\n")
		case "user":
			put(b, deepseekUser, m.Content)
		case "assistant":
			put(b, deepseekAssistant, m.Content, deepseekEOS)
		}
	}
	put(b, when(gen, deepseekAssistant))
}

func formatCommandR(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		var tok string
		switch m.Role {
		case "system":
			tok = "<|SYSTEM_TOKEN|>"
		case "user":
			tok = "<|USER_TOKEN|>"
		case "assistant":
			tok = "<|CHATBOT_TOKEN|>"
		default:
			continue
		}
		put(b, "<|START_OF_TURN_TOKEN|>", tok, trim(m.Content), "<|END_OF_TURN_TOKEN|>")
	}
	put(b, when(gen, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"))
}

func formatChatGLM3(b *strings.Builder, msgs []api.Message, gen bool) {
	b.WriteString("[gMASK]sop")
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n ", m.Content)
	}
	put(b, when(gen, "<|assistant|>"))
}

func formatChatGLM4(b *strings.Builder, msgs []api.Message, gen bool) {
	b.WriteString("[gMASK]<sop>")
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n", m.Content)
	}
	put(b, when(gen, "<|assistant|>\n"))
}

func formatGLMEdge(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|", m.Role, "|>\n", m.Content)
	}
	put(b, when(gen, "<|assistant|>"))
}

func formatMiniCPM(b *strings.Builder, msgs []api.Message, _ bool) {
	for _, m := range msgs {
		if m.Role == "user" {
			put(b, "<用户>", trim(m.Content), "<AI>")
		} else {
			b.WriteString(trim(m.Content))
		}
	}
}

// exaoneFormat is EXAONE 3; tool adds EXAONE 4's tool turns.
func exaoneFormat(tool bool) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, gen bool) {
		for _, m := range msgs {
			c := trim(m.Content)
			switch {
			case m.Role == "system":
				put(b, "[|system|]", c, "[|endofturn|]\n")
			case m.Role == "user":
				put(b, "[|user|]", c, "\n")
			case m.Role == "assistant":
				put(b, "[|assistant|]", c, "[|endofturn|]\n")
			case m.Role == "tool" && tool:
				put(b, "[|tool|]", c, "[|endofturn|]\n")
			}
		}
		put(b, when(gen, "[|assistant|]"))
	}
}

// formatRWKVWorld: the assistant prefix follows a user turn that ends the
// conversation, whatever gen says.
func formatRWKVWorld(b *strings.Builder, msgs []api.Message, _ bool) {
	for i, m := range msgs {
		c := trim(m.Content)
		switch m.Role {
		case "system":
			put(b, "System: ", c, "\n\n")
		case "user":
			put(b, "User: ", c, "\n\n", when(i == len(msgs)-1, "Assistant:"))
		case "assistant":
			put(b, "Assistant: ", c, "\n\n")
		}
	}
}

func formatGranite(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|start_of_role|>", m.Role, "<|end_of_role|>",
			when(m.Role == "assistant_tool_call", "<|tool_call|>"), m.Content, "<|end_of_text|>\n")
	}
	put(b, when(gen, "<|start_of_role|>assistant<|end_of_role|>"))
}

// formatGigaChat: only a leading system message counts; later ones are dropped.
func formatGigaChat(b *strings.Builder, msgs []api.Message, gen bool) {
	b.WriteString("<s>")
	if len(msgs) > 0 && msgs[0].Role == "system" {
		put(b, msgs[0].Content, "<|message_sep|>")
		msgs = msgs[1:]
	}
	for _, m := range msgs {
		switch m.Role {
		case "user":
			put(b, "user<|role_sep|>", m.Content, "<|message_sep|>available functions<|role_sep|>[]<|message_sep|>")
		case "assistant":
			put(b, "assistant<|role_sep|>", m.Content, "<|message_sep|>")
		}
	}
	put(b, when(gen, "assistant<|role_sep|>"))
}

func formatMegrez(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		put(b, "<|role_start|>", m.Role, "<|role_end|>", m.Content, "<|turn_end|>")
	}
	put(b, when(gen, "<|role_start|>assistant<|role_end|>"))
}

func formatYandex(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "user":
			put(b, " Пользователь: ", m.Content, "\n\n")
		case "assistant":
			put(b, " Ассистент: ", m.Content, "\n\n")
		}
	}
	put(b, when(gen, " Ассистент:[SEP]"))
}

// bailingRole is Ling's role name: HUMAN for user, else the role upper-cased.
func bailingRole(role string) string {
	if role == "user" {
		return "HUMAN"
	}
	return asciiUpper(role)
}

// bailingFormat is Ling (think = "") and Ring (think = "<think>").
func bailingFormat(think string) formatFunc {
	return func(b *strings.Builder, msgs []api.Message, gen bool) {
		for _, m := range msgs {
			put(b, "<role>", bailingRole(m.Role), "</role>", m.Content)
		}
		if gen {
			put(b, "<role>ASSISTANT</role>", think)
		}
	}
}

func formatBailing2(b *strings.Builder, msgs []api.Message, gen bool) {
	if len(msgs) == 0 || msgs[0].Role != "system" {
		b.WriteString("<role>SYSTEM</role>detailed thinking off<|role_end|>")
	}
	for _, m := range msgs {
		put(b, "<role>", bailingRole(m.Role), "</role>", m.Content, "<|role_end|>")
	}
	put(b, when(gen, "<role>ASSISTANT</role>"))
}

func formatSmolVLM(b *strings.Builder, msgs []api.Message, gen bool) {
	b.WriteString("<|im_start|>")
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, m.Content, "\n\n")
		case "user":
			put(b, "User: ", m.Content, "<end_of_utterance>\n")
		default:
			put(b, "Assistant: ", m.Content, "<end_of_utterance>\n")
		}
	}
	put(b, when(gen, "Assistant:"))
}

func formatDots1(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, "<|system|>", m.Content, "<|endofsystem|>")
		case "user":
			put(b, "<|userprompt|>", m.Content, "<|endofuserprompt|>")
		default:
			put(b, "<|response|>", m.Content, "<|endofresponse|>")
		}
	}
	put(b, when(gen, "<|response|>"))
}

func formatHunyuanMoE(b *strings.Builder, msgs []api.Message, _ bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, "<|startoftext|>", m.Content, "<|extra_4|>")
		case "assistant":
			put(b, m.Content, "<|eos|>")
		default:
			put(b, "<|startoftext|>", m.Content, "<|extra_0|>")
		}
	}
}

func formatGPTOSS(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		end := "<|end|>"
		if m.Role == "assistant" {
			end = "<|return|>"
		}
		put(b, "<|start|>", m.Role, "<|message|>", m.Content, end)
	}
	put(b, when(gen, "<|start|>assistant"))
}

// formatHunyuanDense: only a leading system message counts; each user turn
// carries the assistant prefix.
func formatHunyuanDense(b *strings.Builder, msgs []api.Message, _ bool) {
	for i, m := range msgs {
		switch {
		case i == 0 && m.Role == "system":
			put(b, m.Content, hunyuanSystemEnd)
		case m.Role == "assistant":
			put(b, hunyuanAssistant, m.Content, hunyuanTurnEnd)
		case m.Role == "user":
			put(b, hunyuanUser, m.Content, hunyuanAssistant)
		}
	}
}

func formatKimiK2(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			b.WriteString("<|im_system|>system<|im_middle|>")
		case "user":
			b.WriteString("<|im_user|>user<|im_middle|>")
		case "assistant":
			b.WriteString("<|im_assistant|>assistant<|im_middle|>")
		case "tool":
			b.WriteString("<|im_system|>tool<|im_middle|>")
		}
		put(b, m.Content, "<|im_end|>")
	}
	put(b, when(gen, "<|im_assistant|>assistant<|im_middle|>"))
}

func formatSeedOSS(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		c := m.Content
		if m.Role == "assistant" {
			c = trim(c)
		}
		put(b, "<seed:bos>", m.Role, "\n", c, "<seed:eos>")
	}
	put(b, when(gen, "<seed:bos>assistant\n"))
}

func formatGrok2(b *strings.Builder, msgs []api.Message, gen bool) {
	for _, m := range msgs {
		switch m.Role {
		case "system":
			put(b, "System: ", trim(m.Content), "<|separator|>\n\n")
		case "user":
			put(b, "Human: ", trim(m.Content), "<|separator|>\n\n")
		case "assistant":
			put(b, "Assistant: ", m.Content, "<|separator|>\n\n")
		}
	}
	put(b, when(gen, "Assistant:"))
}

// formatPanguEmbed: a conversation that does not open with a system message
// gets an empty one.
func formatPanguEmbed(b *strings.Builder, msgs []api.Message, gen bool) {
	for i, m := range msgs {
		if i == 0 && m.Role != "system" {
			put(b, panguSystem, panguClose)
		}
		var open string
		switch m.Role {
		case "system":
			open = panguSystem
		case "user":
			open = panguUser
		case "assistant":
			open = panguAssistant
		case "tool":
			open = panguTool
		case "function":
			open = panguFunction
		default:
			continue
		}
		put(b, open, m.Content, panguClose)
	}
	put(b, when(gen, panguAssistant))
}
