package workerd

import (
	"errors"
	"fmt"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/grammar"
	"github.com/llorch/llorch/core/prompt"
	"github.com/llorch/llorch/core/toolcall"
)

// chatPrompt formats a chat request's messages with the model's template;
// with tools (or tool calls and results in the history) in the way the
// model's family writes them. format is the tool-call format the output is
// parsed with ("" without tools).
func (s *Server) chatPrompt(req *api.ExecuteRequest) (text string, format toolcall.Format, apiErr *api.Error) {
	tpl := prompt.Detect(s.info.ChatTemplateSource)
	choice := api.ToolChoice{Mode: api.ToolAuto}
	if req.ToolChoice != nil {
		choice = *req.ToolChoice
	}
	// Without tools or tool turns, toolcall.Prompt is the template's Format.
	f := toolcall.FormatFor(tpl)
	text, err := toolcall.Prompt(tpl, f, req.Messages, req.Tools, choice, parallelCalls(req), true)
	if len(req.Tools) > 0 && choice.Mode != api.ToolNone {
		format = f
	}
	if err != nil {
		return "", "", &api.Error{Code: api.CodeInvalidRequest, Message: err.Error(),
			Fields: []api.FieldError{{Field: "messages", Constraint: "chat_template", Message: "the model's chat template cannot format these messages; send a prompt"}}}
	}
	return text, format, nil
}

func parallelCalls(req *api.ExecuteRequest) bool {
	return req.ParallelToolCalls == nil || *req.ParallelToolCalls
}

// grammarOf is the GBNF grammar a request's output must follow: its own, the
// one of its JSON response format, or the one of the tool call it must make;
// "" when it has none. The grammar is checked against the model's vocabulary.
func (s *Server) grammarOf(req *api.ExecuteRequest, format toolcall.Format) (string, *api.Error) {
	var (
		g     string
		err   error
		field = "grammar"
	)
	switch rf := req.ResponseFormat; {
	case req.Grammar != "":
		g = req.Grammar
	case rf != nil && rf.Type == api.FormatJSONObject:
		g, field = grammar.JSONObject(), "response_format"
	case rf != nil && rf.Type == api.FormatJSONSchema:
		g, err = grammar.FromSchema(rf.JSONSchema.Schema)
		field = "response_format.json_schema.schema"
	case format != "" && req.ToolChoice != nil && (req.ToolChoice.Mode == api.ToolRequired || req.ToolChoice.Mode == api.ToolForced):
		g, err = toolcall.Grammar(format, req.Tools, *req.ToolChoice, parallelCalls(req))
		field = "tools"
	}
	if err == nil && g != "" {
		if gc, ok := s.model.(backends.GrammarChecker); ok {
			err = gc.CheckGrammar(g)
		}
	}
	if err != nil {
		constraint := "grammar"
		if errors.Is(err, grammar.ErrUnsupported) {
			constraint = "supported_schema"
		}
		return "", &api.Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf("invalid request: %v", err),
			Fields: []api.FieldError{{Field: field, Constraint: constraint, Message: err.Error()}}}
	}
	return g, nil
}
