package openai

import "github.com/llorch/llorch/core/api"

// newToolOutput parses a choice's text for tool calls written in format.
// TODO(lead): core/toolcall.
func newToolOutput(format string, tools []api.Tool) outputParser { return plainOutput{} }
