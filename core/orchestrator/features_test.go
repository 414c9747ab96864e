package orchestrator

import (
	"encoding/json"
	"net/http"
	"regexp"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// TestTaskFeaturesRelayed: /v2/tasks takes a raw grammar, a response format
// and logprobs; the worker applies them and the relay keeps the token
// events' logprobs. A schema the worker would refuse is a 400 before the
// task is queued.
func TestTaskFeaturesRelayed(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)

	req := taskReq("tiny", "Answer:", 32, 1)
	req.IgnoreEOS = false
	req.Grammar = `root ::= ("yes" | "no") (" " ("yes" | "no")){0,2}`
	req.Logprobs, req.TopLogprobs = true, 2
	text, last := checkStream(t, o.submitStream(t, req), 0)
	if last.Name != api.EventEnd || !regexp.MustCompile(`^(yes|no)( (yes|no)){0,2}$`).MatchString(text) {
		t.Fatalf("%s: %q", last.Name, text)
	}
	for _, e := range relayed(o.submitStream(t, req)) {
		if e.Name != api.EventToken {
			continue
		}
		if tok := e.token(); tok.LP == nil || len(tok.LP.Top) == 0 || tok.LP.Logprob > 0 {
			t.Fatalf("token event without logprobs through the relay: %+v", tok)
		}
	}

	req = taskReq("tiny", "JSON:", 64, 2)
	req.IgnoreEOS = false
	req.ResponseFormat = &api.ResponseFormat{Type: api.FormatJSONSchema, JSONSchema: &api.JSONSchemaSpec{Name: "v",
		Schema: json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],"additionalProperties":false}`)}}
	text, last = checkStream(t, o.submitStream(t, req), 0)
	var v struct{ OK *bool }
	if err := json.Unmarshal([]byte(text), &v); last.Name != api.EventEnd || err != nil || v.OK == nil {
		t.Fatalf("%s: %q %v", last.Name, text, err)
	}

	req.ResponseFormat.JSONSchema.Schema = json.RawMessage(`{"type":"string","pattern":"^a+$"}`)
	e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusBadRequest, api.CodeInvalidRequest)
	if len(e.Fields) == 0 || e.Fields[0].Field != "response_format.json_schema.schema" {
		t.Errorf("fields %+v", e.Fields)
	}
}
