package workerd_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerd"
)

// /health and the heartbeat carry the worker's resident memory (and its
// VRAM, 0 on the CPU), read from the process itself.
func TestHeartbeatMemory(t *testing.T) {
	beats := make(chan api.Heartbeat, 16)
	orch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/workers/register":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{}`))
		case strings.HasSuffix(r.URL.Path, "/heartbeat"):
			var hb api.Heartbeat
			if err := json.NewDecoder(r.Body).Decode(&hb); err == nil {
				select {
				case beats <- hb:
				default:
				}
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer orch.Close()
	w := startWorker(t, func(c *workerd.Config) {
		c.Orchestrator, c.HeartbeatInterval, c.WorkerID = orch.URL, 20*time.Millisecond, "rss-1"
	})
	h, err := w.client.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && h.RSSBytes < 1<<20 {
		t.Errorf("/health rss_bytes = %d, want this process's resident memory", h.RSSBytes)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case hb := <-beats:
			if hb.Status != api.StatusReady {
				continue
			}
			if runtime.GOOS == "linux" && hb.RSSBytes < 1<<20 {
				t.Errorf("heartbeat rss_bytes = %d", hb.RSSBytes)
			}
			if hb.VRAMBytes != h.VRAMBytes {
				t.Errorf("heartbeat vram_bytes = %d, /health says %d", hb.VRAMBytes, h.VRAMBytes)
			}
			return
		case <-deadline:
			t.Fatal("no ready heartbeat within 30s")
		}
	}
}
