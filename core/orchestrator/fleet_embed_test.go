package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// embedReq is a one-input /v1/embeddings request for model.
func embedReq(model string) *openai.EmbedRequest {
	return &openai.EmbedRequest{Model: model, Input: []openai.EmbedInput{{Text: "the sea"}}}
}

// embedAsync runs an embeddings request as the HTTP handler does; its
// result arrives on the channel.
func (p *parts) embedAsync(model string) <-chan error {
	out := make(chan error, 1)
	go func() {
		res, err := embedBackend{p.Server}.Embed(context.Background(), embedReq(model))
		if err == nil && len(res.Vectors) != 1 {
			err = errors.New("not one vector")
		}
		out <- err
	}()
	return out
}

// A /v1/embeddings request for a declared embedding model with no worker
// waits while the fleet starts one, spawned with --embedding, then runs on
// it; a task for that model is refused.
func TestFleetEmbeddingOnDemand(t *testing.T) {
	fp := newFakePools("a")
	fp.gate = make(chan struct{})
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "e", Source: "hf:org/repo/e.gguf@main", Embedding: true})
	if v := p.model(t, "e"); v.State != api.ModelIdle || v.Replicas.Ready != 0 || !v.Embedding {
		t.Fatalf("before any request: %+v", v)
	}
	done := p.embedAsync("e")
	waitFor(t, 5*time.Second, "the spawn", func() bool { return len(fp.spawned()) == 1 })
	if r := fp.spawned()[0]; !r.Spec.Embedding || r.Spec.ID != "e" {
		t.Fatalf("spawned %+v, want an embedding worker of e", r)
	}
	select {
	case err := <-done:
		t.Fatalf("the request ended before its worker started: %v", err)
	default:
	}
	close(fp.gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request is still waiting")
	}
	// The request ran once the worker registered; the fleet marks its
	// replica ready right after.
	waitFor(t, 5*time.Second, "the replica ready", func() bool { return p.model(t, "e").Replicas.Ready == 1 })
	v := p.model(t, "e")
	if len(v.Workers) != 1 {
		t.Fatalf("model after the start: %+v", v)
	}
	if n := p.fleet.connect("http://" + v.Workers[0].WorkerID + ".test:1").(*fakeWorker).embedded(); n != 1 {
		t.Fatalf("the new worker answered %d embedding requests, want 1", n)
	}
	// The next request goes straight to it; no second start.
	if err := <-p.embedAsync("e"); err != nil || len(fp.spawned()) != 1 {
		t.Fatalf("second request: %v, spawns %d", err, len(fp.spawned()))
	}
	// Tasks never wait for an embedding model.
	_, e := p.Server.submit(context.Background(), &api.TaskRequest{Model: "e", ExecuteRequest: api.ExecuteRequest{Prompt: "p"}}, true)
	if e == nil || e.Code != api.CodeModelNotFound || !strings.Contains(e.Message, "embedding") {
		t.Fatalf("a task for the embedding model: %v", e)
	}
	// A generation model is not started for embeddings.
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main"})
	var ae *api.Error
	if err := <-p.embedAsync("m"); !errors.As(err, &ae) || ae.Code != api.CodeModelNotFound || len(fp.spawned()) != 1 {
		t.Fatalf("embeddings of a generation model: %v, spawns %d", err, len(fp.spawned()))
	}
}

// A worker that does not come up within EmbedStartWait: 503
// POOL_UNAVAILABLE with a Retry-After (over HTTP, the model declared with
// PUT /v2/models); the start goes on, and serves the next request.
func TestFleetEmbeddingStartTimeout(t *testing.T) {
	fp := newFakePools("a")
	fp.gate = make(chan struct{})
	cfg := fleetConfig()
	cfg.EmbedStartWait = 300 * time.Millisecond
	p := startFleet(t, cfg, fp, "", api.Pool{Name: "a"})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	send := func(method, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := send(http.MethodPut, "/v2/models/e", `{"source":"hf:org/repo/e.gguf@main","embedding":true}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v2/models/e: %d", resp.StatusCode)
	}
	if v := p.model(t, "e"); !v.Embedding {
		t.Fatalf("declared %+v", v)
	}
	resp := send(http.MethodPost, "/v1/embeddings", `{"model":"e","input":"the sea"}`)
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "pool_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, error %+v; want 503 pool_unavailable with a Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error)
	}
	if n := value(p.m.rejections.WithLabelValues(rejectionLabel(api.CodePoolUnavailable))); n != 1 {
		t.Fatalf("rejections{pool_unavailable} = %v", n)
	}
	if len(fp.spawned()) != 1 {
		t.Fatalf("spawns %v", fp.spawned())
	}
	close(fp.gate)
	waitFor(t, 5*time.Second, "the replica", func() bool { return p.model(t, "e").Replicas.Ready == 1 })
	if err := <-p.embedAsync("e"); err != nil {
		t.Fatal(err)
	}
	// No demand left: a pass starts nothing more.
	p.Server.fleet.reconcile(context.Background(), time.Now())
	if v := p.model(t, "e"); v.Replicas.Starting != 0 || len(v.Workers) != 1 {
		t.Fatalf("after a pass: %+v", v)
	}
}

// Replicas are counted by kind: a generation worker of an embedding model's
// id is none of its replicas (nor the other way round), so min_replicas
// starts one of the right kind beside it.
func TestFleetReplicasByKind(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	p.waitPools(t, "a")
	for _, w := range []struct {
		id, model string
		embedding bool
	}{{"ext-gen", "e", false}, {"ext-emb", "m", true}} { // registered by hand, outside the fleet
		url := "http://" + w.id + ".test:1"
		p.fleet.add(url)
		p.reg.register(api.WorkerRegistration{WorkerID: w.id, URL: url, Model: api.ModelInfo{ID: w.model, Ctx: 4096, Embedding: w.embedding}, Slots: 4})
	}
	declare(t, p, api.ModelSpec{ID: "e", Source: "hf:org/repo/e.gguf@main", MinReplicas: 1, Embedding: true})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "a replica of each", func() bool {
		return p.model(t, "e").Replicas.Ready == 1 && p.model(t, "m").Replicas.Ready == 1
	})
	kinds := map[string]bool{}
	for _, r := range fp.spawned() {
		kinds[r.Spec.ID] = r.Spec.Embedding
	}
	if len(fp.spawned()) != 2 || !kinds["e"] || kinds["m"] {
		t.Fatalf("spawns %+v: want an embedding worker of e and a generation worker of m", fp.spawned())
	}
	waitFor(t, 5*time.Second, "the replica gauges", func() bool {
		return value(p.m.fleetReplicas.WithLabelValues("e", "ready")) == 1 && value(p.m.fleetReplicas.WithLabelValues("m", "ready")) == 1
	})
	// Two workers of each id are healthy, one of each kind; a pass still
	// counts one replica each and starts nothing.
	p.Server.fleet.reconcile(context.Background(), time.Now())
	for _, id := range []string{"e", "m"} {
		if v := p.model(t, id); v.Replicas.Starting != 0 || len(v.Workers) != 1 || value(p.m.fleetReplicas.WithLabelValues(id, "ready")) != 1 {
			t.Fatalf("%s after a pass: %+v, gauge %v", id, v, value(p.m.fleetReplicas.WithLabelValues(id, "ready")))
		}
	}
	// Embeddings of e go to its embedding replica, never to ext-gen; ext-emb
	// (an embedding worker of m) serves m's.
	if err := <-p.embedAsync("e"); err != nil {
		t.Fatal(err)
	}
	if n := p.fleet.connect("http://ext-gen.test:1").(*fakeWorker).embedded(); n != 0 {
		t.Fatalf("a generation worker answered %d embedding requests", n)
	}
	if err := <-p.embedAsync("m"); err != nil || p.fleet.connect("http://ext-emb.test:1").(*fakeWorker).embedded() != 1 {
		t.Fatalf("embeddings of m: %v", err)
	}
}
