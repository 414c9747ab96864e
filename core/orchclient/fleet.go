package orchclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Pools lists the pools with their state and inventory (admin).
func (c *Client) Pools(ctx context.Context) ([]api.PoolView, error) {
	var out struct{ Pools []api.PoolView }
	return out.Pools, c.call(ctx, http.MethodGet, "/v2/pools", nil, &out)
}

// Pool returns one pool with its inventory and last error (admin).
func (c *Client) Pool(ctx context.Context, name string) (api.PoolView, error) {
	var v api.PoolView
	return v, c.call(ctx, http.MethodGet, "/v2/pools/"+esc(name), nil, &v)
}

// PutPool adds or replaces a pool (admin).
func (c *Client) PutPool(ctx context.Context, p api.Pool) (api.PoolView, error) {
	var out api.PoolView
	return out, c.call(ctx, http.MethodPost, "/v2/pools", p, &out)
}

// RefreshPool refreshes a pool's inventory now and returns it (admin).
func (c *Client) RefreshPool(ctx context.Context, name string) (api.PoolView, error) {
	var v api.PoolView
	return v, c.call(ctx, http.MethodPost, "/v2/pools/"+esc(name)+"/refresh", nil, &v)
}

// DeletePool removes a pool (admin); the workers the fleet started there are
// stopped.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/v2/pools/"+esc(name), nil, nil)
}

// Models lists the declared models with their replicas (admin).
func (c *Client) Models(ctx context.Context) ([]api.ModelView, error) {
	var out struct{ Models []api.ModelView }
	return out.Models, c.call(ctx, http.MethodGet, "/v2/models", nil, &out)
}

// Model returns one declared model (admin).
func (c *Client) Model(ctx context.Context, id string) (api.ModelView, error) {
	var v api.ModelView
	return v, c.call(ctx, http.MethodGet, "/v2/models/"+esc(id), nil, &v)
}

// PutModel declares a model or changes its spec (admin).
func (c *Client) PutModel(ctx context.Context, m api.ModelSpec) (api.ModelView, error) {
	var v api.ModelView
	return v, c.call(ctx, http.MethodPut, "/v2/models/"+esc(m.ID), m, &v)
}

// DeleteModel undeclares a model; its workers are drained and stopped (admin).
func (c *Client) DeleteModel(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v2/models/"+esc(id), nil, nil)
}

// Capabilities returns what the orchestrator serves (any key).
func (c *Client) Capabilities(ctx context.Context) (api.Capabilities, error) {
	var v api.Capabilities
	return v, c.call(ctx, http.MethodGet, "/v2/meta/capabilities", nil, &v)
}

// FleetEvents returns the journaled fleet events after seq after, oldest
// first, at most limit (admin).
func (c *Client) FleetEvents(ctx context.Context, after uint64, limit int) ([]api.FleetEvent, error) {
	var out struct{ Events []api.FleetEvent }
	return out.Events, c.call(ctx, http.MethodGet, fmt.Sprintf("/v2/events?after=%d&limit=%d", after, limit), nil, &out)
}

// FollowFleetEvents streams fleet events after seq after until ctx ends or
// the connection breaks; each is passed to f, which stops the stream by
// returning an error.
func (c *Client) FollowFleetEvents(ctx context.Context, after uint64, f func(api.FleetEvent) error) error {
	resp, err := c.do(ctx, http.MethodGet, "/v2/events", nil, "Accept", "text/event-stream", "Last-Event-ID", strconv.FormatUint(after, 10))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		var fe api.FleetEvent
		if err := json.Unmarshal(ev.Data, &fe); err != nil {
			return fmt.Errorf("orchclient: fleet event: %w", err)
		}
		if err := f(fe); err != nil {
			return err
		}
	}
}
