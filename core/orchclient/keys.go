package orchclient

import (
	"context"
	"net/http"

	"github.com/llorch/llorch/core/api"
)

// CreateKey makes a new API key (admin). The answer holds the key itself:
// the only time it is shown.
func (c *Client) CreateKey(ctx context.Context, spec api.KeySpec) (api.KeyCreated, error) {
	var out api.KeyCreated
	return out, c.call(ctx, http.MethodPost, "/v2/keys", spec, &out)
}

// Keys lists the API keys, those of the key file included, never a secret
// (admin).
func (c *Client) Keys(ctx context.Context) ([]api.KeyView, error) {
	var out struct{ Keys []api.KeyView }
	return out.Keys, c.call(ctx, http.MethodGet, "/v2/keys", nil, &out)
}

// Key returns one API key by name (admin).
func (c *Client) Key(ctx context.Context, name string) (api.KeyView, error) {
	var v api.KeyView
	return v, c.call(ctx, http.MethodGet, "/v2/keys/"+esc(name), nil, &v)
}

// UpdateKey changes a stored key's role, weight or limits: the fields u
// gives (limits as a whole) (admin).
func (c *Client) UpdateKey(ctx context.Context, name string, u api.KeyUpdate) (api.KeyView, error) {
	var v api.KeyView
	return v, c.call(ctx, http.MethodPatch, "/v2/keys/"+esc(name), u, &v)
}

// RevokeKey revokes a stored key (admin; again is no error): requests with it
// get 401 at once and its queued tasks end with KEY_REVOKED.
func (c *Client) RevokeKey(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/v2/keys/"+esc(name), nil, nil)
}
