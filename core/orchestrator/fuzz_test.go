package orchestrator

import (
	"encoding/json"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// FuzzDecodeTask: any body gives a valid task or an INVALID_REQUEST error,
// never a panic, and a valid task survives a JSON round trip.
func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"model":"m","prompt":"hi","priority":"batch","placement":{"pin_pool":"p"},"deadline_ms":5}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"session_id":"s","labels":{"a":"b"}}`))
	f.Add([]byte(`{"model":"","prompt":"","priority":"urgent","job_id":"x"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := decodeTask(body)
		if e != nil {
			if e.Code != api.CodeInvalidRequest || req != nil {
				t.Fatalf("error %+v with request %v", e, req)
			}
			return
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, e := decodeTask(data)
		if e != nil || again.Model != req.Model || again.PriorityOrDefault() != req.PriorityOrDefault() {
			t.Fatalf("round trip: %+v, %v", again, e)
		}
	})
}
