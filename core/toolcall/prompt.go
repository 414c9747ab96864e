package toolcall

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prompt"
)

// Prompt renders the whole prompt for a chat with tools: the tool
// definitions (unless choice is none), earlier calls as the model would have
// written them and role "tool" messages as the family's tool results.
// Messages with no tool calls and no tool results, and no tools offered,
// render exactly as t.Format renders them.
//
// parallel does not change the text: none of the families' templates says
// anything different for it (the grammar and the parser enforce it).
func Prompt(t prompt.Template, f Format, msgs []api.Message, tools []api.Tool, choice api.ToolChoice, parallel bool, addGenerationPrompt bool) (string, error) {
	if choice.Mode == api.ToolNone {
		tools = nil
	}
	if len(tools) == 0 && !hasToolTurns(msgs) {
		return t.Format(msgs, addGenerationPrompt)
	}
	switch f {
	case Hermes:
		m, err := hermesMessages(msgs, tools, keepsSystem(t))
		if err != nil {
			return "", err
		}
		return t.Format(m, addGenerationPrompt)
	case Llama3:
		if t != prompt.Llama3 {
			return "", fmt.Errorf("%w: %s with template %s", ErrFormat, f, t)
		}
		return llama3Prompt(msgs, tools, addGenerationPrompt)
	case Mistral:
		if !isMistral(t) {
			return "", fmt.Errorf("%w: %s with template %s", ErrFormat, f, t)
		}
		return mistralPrompt(t, msgs, tools)
	}
	return "", fmt.Errorf("%w: %q", ErrFormat, f)
}

func hasToolTurns(msgs []api.Message) bool {
	for _, m := range msgs {
		if m.Role == "tool" || len(m.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// toolJSON is a tool as the templates' tojson writes it.
func toolJSON(tl api.Tool, indent int) (string, error) {
	if tl.Type == "" {
		tl.Type = "function"
	}
	raw, err := marshal(tl)
	if err != nil {
		return "", fmt.Errorf("toolcall: tool %q: %w", tl.Function.Name, err)
	}
	return pyJSON(raw, indent)
}

// argsJSON is a call's arguments as tojson writes them (the templates get the
// arguments as an object); arguments that are not JSON are written as they
// are.
func argsJSON(args string) string {
	if strings.TrimSpace(args) == "" {
		return "{}"
	}
	s, err := pyJSON([]byte(args), 0)
	if err != nil {
		return args
	}
	return s
}

// --- Hermes (Qwen2.5) ---

const (
	hermesToolsHead = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
	hermesToolsTail = "\n</tools>\n\nFor each function call, return a json object with function name and arguments " +
		"within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
)

// keepsSystem reports whether t writes a system message's text (a few
// templates drop it; then the tool block goes into the first user turn).
func keepsSystem(t prompt.Template) bool {
	const probe = "\x00toolcall-probe\x00"
	s, err := t.Format([]api.Message{{Role: "system", Content: probe}, {Role: "user", Content: "u"}}, false)
	return err == nil && strings.Contains(s, probe)
}

// hermesMessages rewrites a chat with tools into plain messages for any
// template: the tool block goes into the system message (after its text, as
// Qwen's templates put it), calls become <tool_call> text in the assistant
// turn, and a run of tool results becomes one user turn of <tool_response>
// blocks. With ChatML this is byte for byte Qwen2.5's template (except that a
// chat without a system message gets no "You are Qwen" default, as with
// Qwen3 and as llorch's ChatML has none).
//
// With system false (the template drops system messages) the tool block opens
// the first user turn instead.
func hermesMessages(msgs []api.Message, tools []api.Tool, system bool) ([]api.Message, error) {
	out := make([]api.Message, 0, len(msgs)+1)
	for i := 0; i < len(msgs); i++ {
		m := msgs[i]
		switch {
		case m.Role == "tool":
			var parts []string
			for ; i < len(msgs) && msgs[i].Role == "tool"; i++ {
				parts = append(parts, "<tool_response>\n"+msgs[i].Content+"\n</tool_response>")
			}
			i--
			out = append(out, api.Message{Role: "user", Content: strings.Join(parts, "\n")})
		case len(m.ToolCalls) > 0:
			var parts []string
			if m.Content != "" {
				parts = append(parts, m.Content)
			}
			for _, c := range m.ToolCalls {
				parts = append(parts, hermesCall(c.Function.Name, argsJSON(c.Function.Arguments)))
			}
			out = append(out, api.Message{Role: m.Role, Content: strings.Join(parts, "\n")})
		default:
			out = append(out, api.Message{Role: m.Role, Content: m.Content})
		}
	}
	if len(tools) == 0 {
		return out, nil
	}
	var b strings.Builder
	b.WriteString(hermesToolsHead)
	for _, tl := range tools {
		s, err := toolJSON(tl, 0)
		if err != nil {
			return nil, err
		}
		b.WriteString("\n")
		b.WriteString(s)
	}
	b.WriteString(hermesToolsTail)
	block := b.String()
	if !system {
		for i := range out {
			if out[i].Role == "user" {
				out[i].Content = block + "\n\n" + out[i].Content
				return out, nil
			}
		}
	}
	if len(out) > 0 && out[0].Role == "system" {
		out[0].Content += "\n\n" + block
		return out, nil
	}
	return append([]api.Message{{Role: "system", Content: block}}, out...), nil
}

func hermesCall(name, args string) string {
	return "<tool_call>\n{\"name\": \"" + name + "\", \"arguments\": " + args + "}\n</tool_call>"
}

// --- Llama 3.1 / 3.2 ---

const (
	llamaHeader    = "<|start_header_id|>"
	llamaHeaderEnd = "<|end_header_id|>\n\n"
	llamaEOT       = "<|eot_id|>"
	// llamaDate is the templates' default date_string: a fixed date keeps
	// the prompt (and its cached prefix) the same from day to day.
	llamaSystemHead = "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
	llamaFormatHint = `Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.` +
		"Do not use variables.\n\n"
	llamaToolsSystem = "You have access to the following functions. To call a function, please respond with JSON for a function call." + llamaFormatHint
	llamaToolsUser   = "Given the following functions, please respond with a JSON for a function call " +
		"with its proper arguments that best answers the given prompt.\n\n" + llamaFormatHint
)

// llama3Prompt follows Llama 3.1's template (tools_in_user_message: the
// definitions open the first user turn; when the chat does not start with a
// user turn they go into the system turn, the template's other layout). A
// message with several calls becomes one assistant turn a call (the template
// refuses them). Without tools offered the system turn is llorch's plain one.
func llama3Prompt(msgs []api.Message, tools []api.Tool, gen bool) (string, error) {
	var b strings.Builder
	turn := func(role, content string) { put(&b, llamaHeader, role, llamaHeaderEnd, content, llamaEOT) }
	if len(tools) > 0 {
		var defs strings.Builder
		for _, tl := range tools {
			s, err := toolJSON(tl, 4)
			if err != nil {
				return "", err
			}
			put(&defs, s, "\n\n")
		}
		system := ""
		if len(msgs) > 0 && msgs[0].Role == "system" {
			system = prompt.Trim(msgs[0].Content)
			msgs = msgs[1:]
		}
		if len(msgs) > 0 && msgs[0].Role == "user" && len(msgs[0].ToolCalls) == 0 {
			turn("system", llamaSystemHead+system)
			turn("user", llamaToolsUser+defs.String()+prompt.Trim(msgs[0].Content))
			msgs = msgs[1:]
		} else {
			turn("system", llamaSystemHead+llamaToolsSystem+defs.String()+system)
		}
	}
	for _, m := range msgs {
		switch {
		case m.Role == "tool" || m.Role == "ipython":
			turn("ipython", m.Content)
		case len(m.ToolCalls) > 0:
			for _, c := range m.ToolCalls {
				turn("assistant", `{"name": "`+c.Function.Name+`", "parameters": `+argsJSON(c.Function.Arguments)+"}")
			}
		default:
			turn(m.Role, prompt.Trim(m.Content))
		}
	}
	if gen {
		put(&b, llamaHeader, "assistant", llamaHeaderEnd)
	}
	return b.String(), nil
}

// --- Mistral ---

// mistralStyle is one Mistral template's spelling.
type mistralStyle struct {
	inst, instEnd string // around a user turn
	replyPad      string // before an assistant reply
	trimReply     bool
	v7            bool   // system turns as [SYSTEM_PROMPT]...[/SYSTEM_PROMPT]
	sysPad        string // after [SYSTEM_PROMPT]
	sp            string // after [AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS]
}

var mistralStyles = map[prompt.Template]mistralStyle{
	prompt.MistralV1:       {inst: " [INST] ", instEnd: " [/INST]", replyPad: " ", sp: " "},
	prompt.MistralV3:       {inst: "[INST] ", instEnd: "[/INST]", replyPad: " ", trimReply: true, sp: " "},
	prompt.MistralV3Tekken: {inst: "[INST]", instEnd: "[/INST]"},
	prompt.MistralV7:       {inst: "[INST] ", instEnd: "[/INST]", replyPad: " ", v7: true, sysPad: " ", sp: " "},
	prompt.MistralV7Tekken: {inst: "[INST]", instEnd: "[/INST]", v7: true, sp: " "},
}

// mistralPrompt follows Mistral's templates (v0.3 spaced, Nemo's tekken
// unspaced, llama.cpp's Mistral Small 3.1 for v7): the tool list right before
// the last user turn, calls as [TOOL_CALLS] [{"name", "arguments", "id"}]</s>
// with 9-character ids, results as [TOOL_RESULTS] {"content": ..., "call_id":
// ...}[/TOOL_RESULTS]. Before v7 the system text opens the last user turn (the
// templates drop it when the chat ends in a tool result; this keeps it). A
// tool result that is not JSON is written as a JSON string (the templates
// write it raw, which is not JSON). Mistral has no generation prompt.
func mistralPrompt(t prompt.Template, msgs []api.Message, tools []api.Tool) (string, error) {
	st := mistralStyles[t]
	var b strings.Builder
	lastUser := -1
	var system []string
	for i, m := range msgs {
		if m.Role == "user" {
			lastUser = i
		}
		if m.Role == "system" && !st.v7 {
			system = append(system, m.Content)
		}
	}
	var avail string
	if len(tools) > 0 {
		var a strings.Builder
		put(&a, "[AVAILABLE_TOOLS]", st.sp, "[")
		for i, tl := range tools {
			s, err := mistralTool(tl.Function)
			if err != nil {
				return "", err
			}
			put(&a, when(i > 0, ", "), s)
		}
		a.WriteString("][/AVAILABLE_TOOLS]")
		avail = a.String()
	}
	if lastUser < 0 {
		b.WriteString(avail)
	}
	for i, m := range msgs {
		switch {
		case m.Role == "system":
			if st.v7 {
				put(&b, "[SYSTEM_PROMPT]", st.sysPad, m.Content, "[/SYSTEM_PROMPT]")
			}
		case m.Role == "user":
			if i == lastUser {
				b.WriteString(avail)
				c := m.Content
				if len(system) > 0 {
					c = strings.Join(system, "\n\n") + "\n\n" + c
				}
				put(&b, st.inst, c, st.instEnd)
			} else {
				put(&b, st.inst, m.Content, st.instEnd)
			}
		case m.Role == "tool":
			put(&b, "[TOOL_RESULTS]", st.sp, `{"content": `, mistralContent(m.Content), `, "call_id": "`, mistralID(m.ToolCallID), `"}[/TOOL_RESULTS]`)
		case len(m.ToolCalls) > 0:
			put(&b, "[TOOL_CALLS]", st.sp, "[")
			for k, c := range m.ToolCalls {
				put(&b, when(k > 0, ", "), `{"name": "`, c.Function.Name, `", "arguments": `, argsJSON(c.Function.Arguments),
					`, "id": "`, mistralID(c.ID), `"}`)
			}
			b.WriteString("]</s>")
		default:
			c := m.Content
			if st.trimReply {
				c = prompt.Trim(c)
			}
			put(&b, st.replyPad, c, "</s>")
		}
	}
	return b.String(), nil
}

// mistralTool writes a function as Mistral's templates do: string fields
// verbatim between quotes, the others through tojson.
func mistralTool(f api.ToolFunction) (string, error) {
	var b strings.Builder
	put(&b, `{"type": "function", "function": {"name": "`, f.Name, `"`)
	if f.Description != "" {
		put(&b, `, "description": "`, f.Description, `"`)
	}
	if len(f.Parameters) > 0 {
		p, err := pyJSON(f.Parameters, 0)
		if err != nil {
			return "", fmt.Errorf("toolcall: tool %q parameters: %w", f.Name, err)
		}
		put(&b, `, "parameters": `, p)
	}
	if f.Strict != nil {
		put(&b, `, "strict": `, fmt.Sprint(*f.Strict))
	}
	b.WriteString("}}")
	return b.String(), nil
}

// mistralContent is a tool result as JSON: itself when it is JSON, else
// quoted.
func mistralContent(s string) string {
	if json.Valid([]byte(s)) {
		if p, err := pyJSON([]byte(s), 0); err == nil {
			return p
		}
	}
	var b strings.Builder
	pyString(&b, s)
	return b.String()
}

// mistralID is the 9-character id Mistral's templates want: the last nine
// letters and digits of the id (llama.cpp's template takes the last nine), or
// a digest of a shorter one.
func mistralID(id string) string {
	var an []byte
	for i := 0; i < len(id); i++ {
		if c := id[i]; 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			an = append(an, c)
		}
	}
	if len(an) >= 9 {
		return string(an[len(an)-9:])
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:9]
}

// --- helpers ---

func put(b *strings.Builder, parts ...string) {
	for _, p := range parts {
		b.WriteString(p)
	}
}

func when(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
