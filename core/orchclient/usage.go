package orchclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/llorch/llorch/core/api"
)

// UsageQuery selects usage: a key and a model ("" any; a user key sees its
// own only), since and until (RFC 3339, or a duration back from now such as
// 24h; "" is the orchestrator's default: the last 24 hours).
type UsageQuery struct {
	Key, Model   string
	Since, Until string
}

// Usage returns hourly usage rows by key and model, oldest first, and their
// totals (GET /v2/usage).
func (c *Client) Usage(ctx context.Context, q UsageQuery) (api.Usage, error) {
	v := url.Values{}
	for name, s := range map[string]string{"key": q.Key, "model": q.Model, "since": q.Since, "until": q.Until} {
		if s != "" {
			v.Set(name, s)
		}
	}
	path := "/v2/usage"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out api.Usage
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}
