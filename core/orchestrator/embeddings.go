package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/workerclient"
)

// Embeddings: POST /v1/embeddings goes to an embedding worker of the model
// (one started with --embedding; it registers with model.embedding set), not
// through the queue: the request is forwarded at once, through the worker's
// client (workerclient), to the least busy ready one, and tried once more on
// another when that one is busy (503) or cannot be reached. When none is
// ready and the fleet declares the model with embedding: true, the request
// waits while the fleet starts one (fleet.awaitEmbedder, bounded). Generation
// never goes to embedding workers: the registry leaves them out of the
// scheduler's snapshot.

// embedTries is how many workers one request may try.
const embedTries = 2

// embedBackend serves openai.RegisterEmbeddings from the registry.
type embedBackend struct{ s *Server }

var _ openai.EmbedBackend = embedBackend{}

// embedTarget is an embedding worker a request may go to.
type embedTarget struct {
	id     string
	client workerAPI
	busy   int
}

// embedders returns the ready embedding workers of model, least busy first
// (ties by id), leaving out those in skip; known counts the model's
// embedding workers in any state but dead, and others the model's other
// workers.
func (r *registry) embedders(model string, skip []string) (ready []embedTarget, known, others int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		if w.rec.Model.ID != model || w.rec.State == api.WorkerDead {
			continue
		}
		if !w.rec.Model.Embedding {
			others++
			continue
		}
		known++
		if w.rec.State == api.WorkerHealthy && !slices.Contains(skip, w.rec.WorkerID) {
			ready = append(ready, embedTarget{id: w.rec.WorkerID, client: w.client, busy: w.assigned})
		}
	}
	slices.SortFunc(ready, func(a, b embedTarget) int {
		if a.busy != b.busy {
			return a.busy - b.busy
		}
		return strings.Compare(a.id, b.id)
	})
	return ready, known, others
}

// take counts a request running on an embedding worker (release undoes it):
// the least-busy choice sees it.
func (r *registry) take(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		w.assigned++
	}
}

// Embed forwards the request to an embedding worker of its model.
func (b embedBackend) Embed(ctx context.Context, req *openai.EmbedRequest) (res *openai.EmbedResult, err error) {
	s := b.s
	use, lerr := s.limits.admitOnce(principalOf(ctx), req.Model) // the key's limits (limits.go)
	if lerr != nil {
		s.m.rejections.WithLabelValues(rejectionLabel(lerr.Code)).Inc()
		return nil, lerr
	}
	defer func() { use.embedded(res) }()
	body, err := req.ForwardBody()
	if err != nil {
		return nil, err
	}
	var tried []string
	var last error
	for range embedTries {
		ready, known, others := s.reg.embedders(req.Model, tried)
		if len(ready) == 0 && len(tried) == 0 {
			declared, err := s.fleet.awaitEmbedder(ctx, req.Model, func() bool {
				r, _, _ := s.reg.embedders(req.Model, nil)
				return len(r) > 0
			})
			if declared && err != nil {
				var e *api.Error
				if errors.As(err, &e) {
					s.m.rejections.WithLabelValues(rejectionLabel(e.Code)).Inc()
				}
				return nil, err
			}
			ready, known, others = s.reg.embedders(req.Model, tried)
		}
		if len(ready) == 0 {
			var up *openai.UpstreamError
			if errors.As(last, &up) { // the one worker is busy: its 503 and Retry-After
				return nil, last
			}
			e := noEmbedder(req.Model, known, others)
			s.m.rejections.WithLabelValues(rejectionLabel(e.Code)).Inc()
			return nil, e
		}
		w := ready[0]
		tried = append(tried, w.id)
		res, retry, err := b.forward(ctx, w, body)
		if err == nil || !retry || ctx.Err() != nil {
			return res, err
		}
		s.log.Info("embedding request failed on a worker; trying another", "worker_id", w.id, "err", err)
		last = err
	}
	return nil, last
}

// noEmbedder explains why no embedding worker can take a request.
func noEmbedder(model string, known, others int) *api.Error {
	switch {
	case known > 0:
		e := api.Errorf(api.CodePoolUnavailable, "no embedding worker of model %q is ready now", model)
		e.RetryAfterMs = 1000
		return e
	case others > 0:
		return api.Errorf(api.CodeModelNotFound,
			"model %q is served for text generation only: no worker serves its embeddings (start one with llorch worker --embedding)", model)
	}
	return api.Errorf(api.CodeModelNotFound, "no registered worker serves embeddings of model %q", model)
}

// embedAPI is what the orchestrator asks of an embedding worker
// (workerclient.Client has it; workerAPI's other implementations need not).
type embedAPI interface {
	Embeddings(ctx context.Context, body []byte) (*workerclient.Answer, error)
}

var _ embedAPI = httpWorker{}

// forward sends one request to one worker through its client; retry says
// whether another worker may succeed (this one is busy or unreachable). A
// worker's error answer is passed on unchanged (*openai.UpstreamError).
func (b embedBackend) forward(ctx context.Context, w embedTarget, body []byte) (res *openai.EmbedResult, retry bool, err error) {
	s := b.s
	s.reg.take(w.id)
	defer s.reg.release(w.id)
	client, ok := w.client.(embedAPI)
	if !ok {
		return nil, false, &api.Error{Code: api.CodeUnexpectedResponse, Message: fmt.Sprintf("embedding worker %s cannot be asked for embeddings", w.id)}
	}
	ans, err := client.Embeddings(workerclient.WithCorrelationID(ctx, metaOf(ctx).correlation), body)
	var se *workerclient.StatusError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	case errors.As(err, &se) && se.Status == 0:
		s.reg.unreachable(w.id, err.Error())
		return nil, true, &api.Error{Code: api.CodeWorkerUnreachable, Message: fmt.Sprintf("embedding worker %s is unreachable", w.id), Retriable: true}
	case errors.Is(err, workerclient.ErrBrokenAnswer):
		return nil, true, &api.Error{Code: api.CodeWorkerUnreachable, Message: fmt.Sprintf("embedding worker %s broke off its answer", w.id), Retriable: true}
	case errors.Is(err, workerclient.ErrAnswerTooLarge):
		return nil, false, &api.Error{Code: api.CodeUnexpectedResponse, Message: fmt.Sprintf("embedding worker %s answered more than %d bytes", w.id, workerclient.MaxEmbedAnswer)}
	default:
		s.log.Warn("embedding request failed", "worker_id", w.id, "err", err)
		return nil, false, &api.Error{Code: api.CodeUnexpectedResponse, Message: fmt.Sprintf("embedding worker %s could not be asked", w.id)}
	}
	s.fleet.touch(w.id)
	res, err = openai.DecodeEmbedResponse(ans.Status, ans.Header, ans.Body)
	var up *openai.UpstreamError
	switch {
	case err == nil:
		return res, false, nil
	case errors.As(err, &up):
		if up.Status == http.StatusServiceUnavailable {
			return nil, true, err
		}
		return nil, false, err
	default:
		s.log.Warn("embedding worker answered unexpectedly", "worker_id", w.id, "status", ans.Status, "err", err)
		return nil, false, &api.Error{Code: api.CodeUnexpectedResponse, Message: fmt.Sprintf("embedding worker %s answered unexpectedly (status %d)", w.id, ans.Status)}
	}
}
