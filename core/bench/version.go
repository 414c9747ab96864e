package bench

import (
	"context"
	"net/http"
	"time"
)

// serverVersion asks the server what it is, trying in turn the version
// endpoints of the servers this tool is pointed at: a llorch worker's
// GET /health, a llorch orchestrator's GET /v2/meta/capabilities,
// llama-server's GET /props (build_info), vLLM's GET /version and Ollama's
// GET /api/version. It returns "" when none answers.
func serverVersion(ctx context.Context, hc *http.Client, base, key string) string {
	probes := []struct {
		path string
		read func(m map[string]any) string
	}{
		{"/health", func(m map[string]any) string {
			if str(m, "worker_id") == "" || str(m, "version") == "" {
				return ""
			}
			return "llorch worker " + str(m, "version")
		}},
		{"/v2/meta/capabilities", func(m map[string]any) string {
			if str(m, "api_version") == "" || str(m, "version") == "" {
				return ""
			}
			return "llorch orchestrator " + str(m, "version")
		}},
		{"/props", func(m map[string]any) string {
			if b := str(m, "build_info"); b != "" {
				return "llama-server " + b
			}
			return ""
		}},
		{"/version", func(m map[string]any) string {
			if v := str(m, "version"); v != "" {
				return "vllm " + v
			}
			return ""
		}},
		{"/api/version", func(m map[string]any) string {
			if v := str(m, "version"); v != "" {
				return "ollama " + v
			}
			return ""
		}},
	}
	for _, p := range probes {
		if ctx.Err() != nil {
			return ""
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var m map[string]any
		err := getJSON(pctx, hc, base+p.path, key, &m)
		cancel()
		if err == nil {
			if v := p.read(m); v != "" {
				return v
			}
		}
	}
	return ""
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
