package orchestrator

import (
	"context"
	"net/http"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

// workerAPI is what the orchestrator asks of a worker: workerclient.Client
// over HTTP, a fake in the dispatcher's and the registry's tests.
type workerAPI interface {
	// ExecuteWatched starts a job; a stream silent for idle is abandoned
	// (workerclient.ErrIdle).
	ExecuteWatched(ctx context.Context, req *api.ExecuteRequest, idle time.Duration) (eventStream, error)
	Cancel(ctx context.Context, jobID string) (*api.CancelResponse, error)
	Health(ctx context.Context) (*api.Health, error)
}

// eventStream is one job's events.
type eventStream interface {
	Next() (api.Event, error)
	Close() error
}

// httpWorker is a worker reached over HTTP.
type httpWorker struct{ *workerclient.Client }

func (h httpWorker) ExecuteWatched(ctx context.Context, req *api.ExecuteRequest, idle time.Duration) (eventStream, error) {
	st, err := h.Client.ExecuteWatched(ctx, req, idle)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// httpWorkers returns the factory of HTTP worker clients: every request
// carries the worker token.
func httpWorkers(token string, hc *http.Client) func(url string) workerAPI {
	return func(url string) workerAPI { return httpWorker{workerclient.New(url, token, hc)} }
}
