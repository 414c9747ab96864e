package openai

import (
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/toolcall"
)

// toolOutput parses a choice's text for the tool calls the model writes in
// its family's format (the worker names it in the started event).
type toolOutput struct{ p *toolcall.Parser }

// A call the grammar forces (tool_choice required or a named function)
// cannot break: its arguments stream as they are generated. Otherwise a
// call is emitted once it is complete, and one that breaks stays content.
func newToolOutput(format string, tools []api.Tool, choice *api.ToolChoice) outputParser {
	if choice != nil && (choice.Mode == api.ToolRequired || choice.Mode == api.ToolForced) {
		return toolOutput{toolcall.NewStreamingParser(toolcall.Format(format), tools)}
	}
	return toolOutput{toolcall.NewParser(toolcall.Format(format), tools)}
}

func (t toolOutput) push(text string) []outDelta { return deltas(t.p.Push(text)) }
func (t toolOutput) flush() []outDelta           { return deltas(t.p.Flush()) }
func (t toolOutput) calls() []api.ToolCall       { return t.p.Calls() }

func deltas(ds []toolcall.Delta) []outDelta {
	out := make([]outDelta, len(ds))
	for i, d := range ds {
		out[i].content = d.Content
		if c := d.Call; c != nil {
			out[i].call = &callDelta{index: c.Index, id: c.ID, name: c.Name, args: c.Arguments}
		}
	}
	return out
}
