package orchestrator

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai/openaitest"
)

type embeddingsAnswer struct {
	Object string
	Model  string
	Data   []struct {
		Index     int
		Embedding []float32
	}
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
	}
}

func (o *orch) embed(t *testing.T, model string, input any) *http.Response {
	t.Helper()
	return o.do(t, http.MethodPost, "/v1/embeddings", map[string]any{"model": model, "input": input})
}

func unitVectors(t *testing.T, a embeddingsAnswer, n int) {
	t.Helper()
	if a.Object != "list" || a.Model != "tiny" || len(a.Data) != n {
		t.Fatalf("answer %+v, want a list of %d tiny vectors", a, n)
	}
	for i, d := range a.Data {
		var s float64
		for _, x := range d.Embedding {
			s += float64(x) * float64(x)
		}
		if d.Index != i || len(d.Embedding) != 64 || math.Abs(math.Sqrt(s)-1) > 1e-5 {
			t.Fatalf("data[%d]: index %d, %d values, norm %g", i, d.Index, len(d.Embedding), math.Sqrt(s))
		}
	}
}

// Embeddings go to the model's embedding workers, tasks to its generation
// workers; an embedding worker that cannot be reached is passed over.
func TestEmbeddingsRouting(t *testing.T) {
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0001", Role: RoleAdmin}, {Secret: "sk-user-0001", Role: RoleUser}}
	cfg.WorkerToken = "worker-token-1"
	o := startOrch(t, cfg)
	startWorker(t, o, "g1", 2, "--token", "worker-token-1")
	e1 := startWorker(t, o, "e1", 2, "--token", "worker-token-1", "--embedding", "--ctx", "256")
	e2 := startWorker(t, o, "e2", 2, "--token", "worker-token-1", "--embedding", "--ctx", "256")
	o.key = "sk-user-0001" // /v1 as a user

	a := decode[embeddingsAnswer](t, o.embed(t, "tiny", []string{"the sea", "the sea", "a cat"}), http.StatusOK)
	unitVectors(t, a, 3)
	if a.Data[0].Embedding[0] != a.Data[1].Embedding[0] {
		t.Error("identical inputs got different vectors")
	}

	// Generation never lands on an embedding worker.
	for i := range 4 {
		o.key = "sk-user-0001"
		st := o.submitStream(t, taskReq("tiny", "Hello", 2, int64(i)))
		for _, e := range st {
			if e.Name == api.EventStarted && !strings.Contains(string(e.Data), `"worker_id":"g1"`) {
				t.Fatalf("task %d started on %s", i, e.Data)
			}
		}
	}

	// No embedding worker of a model: 404, which says how to get one.
	e := apiOpenAIError(t, o.embed(t, "nope", "x"), http.StatusNotFound)
	if !strings.Contains(e.Message, "nope") {
		t.Errorf("message %q", e.Message)
	}

	// e1 (first by id among idle ones) is gone: the request still succeeds,
	// on e2, and e1 is no longer ready.
	kill(e1)
	unitVectors(t, decode[embeddingsAnswer](t, o.embed(t, "tiny", "after e1"), http.StatusOK), 1)
	waitFor(t, 10*time.Second, "e1 unhealthy", func() bool { return o.workerState("e1") != api.WorkerHealthy })

	// Both gone: 503 POOL_UNAVAILABLE; once they are dead, the model has only
	// a generation worker: 404 naming --embedding.
	kill(e2)
	waitFor(t, 10*time.Second, "e2 unhealthy", func() bool { return o.workerState("e2") != api.WorkerHealthy })
	if e := apiOpenAIError(t, o.embed(t, "tiny", "x"), http.StatusServiceUnavailable); e.Code != "pool_unavailable" {
		t.Errorf("code %q, want pool_unavailable", e.Code)
	}
	waitFor(t, 20*time.Second, "e1, e2 dead", func() bool {
		return o.workerState("e1") == api.WorkerDead && o.workerState("e2") == api.WorkerDead
	})
	if e := apiOpenAIError(t, o.embed(t, "tiny", "x"), http.StatusNotFound); !strings.Contains(e.Message, "--embedding") {
		t.Errorf("message %q does not name --embedding", e.Message)
	}
}

type openAIErrorBody struct {
	Error struct{ Message, Type, Code string }
}

func apiOpenAIError(t *testing.T, resp *http.Response, status int) struct{ Message, Type, Code string } {
	t.Helper()
	return decode[openAIErrorBody](t, resp, status).Error
}

// TestEmbeddingsSDKThroughOrchestrator runs tests/openai-sdk/embeddings.mjs
// through the orchestrator with a user key.
func TestEmbeddingsSDKThroughOrchestrator(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-sdk-0003", Role: RoleUser}}
	cfg.WorkerToken = "worker-token-3"
	o := startOrch(t, cfg)
	startWorker(t, o, "e1", 2, "--token", "worker-token-3", "--embedding", "--ctx", "256")
	sdk.RunScript(t, "embeddings.mjs", o.URL, "sk-sdk-0003", "tiny")
}
