package orchestrator

import (
	"bytes"
	"fmt"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/grammar"
)

// checkSchemas translates the JSON schemas a request's output must follow
// (its response format's, and the parameters of the functions it must call)
// before the task is queued, so that a schema the worker would refuse is a
// 400 now rather than an error event after the 202. The worker translates
// them again (and checks raw grammars against its vocabulary).
func checkSchemas(r *api.ExecuteRequest) *api.Error {
	bad := func(field string, err error) *api.Error {
		return &api.Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf("invalid request: %v", err),
			Fields: []api.FieldError{{Field: field, Constraint: "supported_schema", Message: err.Error()}}}
	}
	if rf := r.ResponseFormat; rf != nil && rf.Type == api.FormatJSONSchema && rf.JSONSchema != nil {
		if _, err := grammar.FromSchema(rf.JSONSchema.Schema); err != nil {
			return bad("response_format.json_schema.schema", err)
		}
	}
	c := r.ToolChoice
	if c == nil || (c.Mode != api.ToolRequired && c.Mode != api.ToolForced) {
		return nil
	}
	for i, t := range r.Tools {
		if c.Mode == api.ToolForced && t.Function.Name != c.Function || len(bytes.TrimSpace(t.Function.Parameters)) == 0 ||
			string(bytes.TrimSpace(t.Function.Parameters)) == "null" {
			continue
		}
		if _, err := grammar.FromSchema(t.Function.Parameters); err != nil {
			return bad(fmt.Sprintf("tools[%d].function.parameters", i), err)
		}
	}
	return nil
}
