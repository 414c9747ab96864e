// Package toolcall implements OpenAI-style tool calling for the chat
// templates of package prompt: it renders tool definitions, earlier calls and
// tool results into a prompt the way each model family's own chat template
// does, builds the GBNF grammar that forces a call when tool_choice asks for
// one, and parses the calls out of generated text, also while it streams.
//
// Three call formats cover the families llorch knows:
//
//   - Hermes: Qwen2.5 and every ChatML model (Hermes, llorch's synthetic test
//     model). The system turn lists the tools in <tools></tools> as Qwen2.5's
//     template does; a call is <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>;
//     tool results come back in a user turn as <tool_response>...</tool_response>.
//     Families without native tool support use this format too, through their
//     own template (the tool block in the system message, calls and results as
//     text).
//   - Llama3: Llama 3.1/3.2. "Environment: ipython" in the system turn, the
//     function definitions as indented JSON in the first user turn, a call is
//     the whole reply {"name": ..., "parameters": {...}} (optionally after
//     <|python_tag|>), results come back in role ipython.
//   - Mistral: [AVAILABLE_TOOLS][...][/AVAILABLE_TOOLS] before the last user
//     turn, a call is [TOOL_CALLS] followed by a JSON array of
//     {"name", "arguments"} (the parser also reads the v11 form
//     [TOOL_CALLS]name[ARGS]{...}), results come back as
//     [TOOL_RESULTS]{"content": ..., "call_id": ...}[/TOOL_RESULTS]. A reply
//     that opens with the bare array counts too ([TOOL_CALLS] is a control
//     token, which a detokenizer may leave out of the text).
//
// JSON inside prompts is written as the templates' tojson filter (Python's
// json.dumps) writes it: ", " and ": " separators, non-ASCII unescaped.
//
// The Parser of NewParser (tool_choice auto) never loses text: a call that
// names an unknown function or whose JSON does not parse is passed on as
// content. It emits a call once the call is complete (a header delta with the
// id and name, then its arguments), so streamed argument fragments always
// concatenate to the final arguments. The Parser of NewStreamingParser is for
// output that Grammar constrains to calls (tool_choice required or a
// function): it emits the header as soon as the name is complete and the
// arguments in fragments as they are generated, compacted as they stream, so
// that they too concatenate to Calls' arguments.
package toolcall
