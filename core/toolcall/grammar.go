package toolcall

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/grammar"
)

// MaxParallelCalls bounds the calls a grammar lets one reply make with
// parallel_tool_calls (a model with random weights would otherwise call
// forever).
const MaxParallelCalls = 8

// ErrNoFunction is returned when tool_choice names a function that is not
// among the tools, or required comes with no tools.
var ErrNoFunction = errors.New("toolcall: tool_choice names no function among the tools")

// Grammar is the GBNF grammar (root rule "root") that forces the reply to be
// tool calls in format f when choice is required (a call to any of the tools)
// or function (a call to that one): the family's call syntax, spelled as the
// family's models write it, a function name among the tools and arguments
// valid for that function's parameters schema. With parallel false it allows
// exactly one call, else up to MaxParallelCalls (Llama3: always one, as its
// template knows no more). White space is bounded everywhere.
//
// For choice auto or none it returns "" and no error: the output is not
// constrained. A parameters schema the grammar package cannot translate
// gives an error wrapping grammar.ErrUnsupported (or grammar.ErrInvalid).
func Grammar(f Format, tools []api.Tool, choice api.ToolChoice, parallel bool) (string, error) {
	var use []api.Tool
	switch choice.Mode {
	case api.ToolRequired:
		use = tools
	case api.ToolForced:
		for _, t := range tools {
			if t.Function.Name == choice.Function {
				use = append(use, t)
			}
		}
	default:
		return "", nil
	}
	if len(use) == 0 {
		return "", fmt.Errorf("%w: %q", ErrNoFunction, choice.Function)
	}
	argsKey := "arguments"
	if f == Llama3 {
		argsKey = "parameters"
	}
	b := grammar.NewBuilder()
	var alts []string
	for _, t := range use {
		params := bytes.TrimSpace(t.Function.Parameters)
		if len(params) == 0 || string(params) == "null" {
			params = []byte(`{"type": "object"}`)
		}
		args, err := b.Schema(params)
		if err != nil {
			return "", fmt.Errorf("toolcall: tool %q parameters: %w", t.Function.Name, err)
		}
		head := grammar.Literal(`{"name": "` + t.Function.Name + `", "` + argsKey + `": `)
		alts = append(alts, b.Rule("call-"+t.Function.Name, head+" "+args+` "}"`))
	}
	call := b.Rule("call", strings.Join(alts, " | "))
	more := 0
	if parallel && f != Llama3 {
		more = MaxParallelCalls - 1
	}
	var root string
	switch f {
	case Hermes:
		one := b.Rule("tool-call", `"<tool_call>\n" `+call+` "\n</tool_call>"`)
		root = one + repeat(`"\n" `+one, more)
	case Llama3:
		// Llama 3.1 told "Environment: ipython" may open with its
		// <|python_tag|> token; the parser takes the call either way.
		root = `"<|python_tag|>"? ` + call
	case Mistral:
		root = `"[TOOL_CALLS]" " "? "[" ` + call + repeat(`", " `+call, more) + ` "]"`
	default:
		return "", fmt.Errorf("%w: %q", ErrFormat, f)
	}
	return b.Grammar(root), nil
}

// repeat is " (item){0,n}", or "" for n 0.
func repeat(item string, n int) string {
	if n == 0 {
		return ""
	}
	return " (" + item + "){0," + strconv.Itoa(n) + "}"
}
