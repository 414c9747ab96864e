package workerclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/llorch/llorch/core/api"
)

// SessionCache asks which slots still hold a session's cached prefix
// (GET /v1/sessions/{id}).
func (c *Client) SessionCache(ctx context.Context, sessionID string) (*api.SessionCache, error) {
	return c.session(ctx, http.MethodGet, sessionID)
}

// DropSession makes the worker forget a session's cached prefix (DELETE
// /v1/sessions/{id}); idempotent.
func (c *Client) DropSession(ctx context.Context, sessionID string) (*api.SessionCache, error) {
	return c.session(ctx, http.MethodDelete, sessionID)
}

func (c *Client) session(ctx context.Context, method, sessionID string) (*api.SessionCache, error) {
	resp, err := c.do(ctx, method, "/v1/sessions/"+url.PathEscape(sessionID), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	var out api.SessionCache
	return &out, json.NewDecoder(resp.Body).Decode(&out)
}
