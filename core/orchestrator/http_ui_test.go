package orchestrator

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/llorch/llorch/core/store"
)

// uiServer is an orchestrator (with an admin key) serving fsys as its
// dashboard, without its loops: /ui needs none.
func uiServer(t *testing.T, fsys fstest.MapFS) *httptest.Server {
	t.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0123456789", Role: RoleAdmin}}
	cfg.WorkerToken = "worker-token-0123456789"
	var deps = Deps{Log: testLogger(t), Store: st}
	if fsys != nil {
		deps.UI = fsys
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.echo)
	t.Cleanup(hs.Close)
	return hs
}

func uiGet(t *testing.T, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// No automatic gzip or redirects: the test looks at what was sent.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// The dashboard's files are served without a key, each with its content
// type, the CSP and an ETag; a repeat with the ETag is a 304; gzip when
// asked and smaller; / and /ui go to /ui/.
func TestUIServing(t *testing.T) {
	index := "<!doctype html><title>llorch</title>" + strings.Repeat("<p>dashboard</p>", 50)
	hs := uiServer(t, fstest.MapFS{
		"index.html":          {Data: []byte(index)},
		"app.css":             {Data: []byte("body{color:red}")},
		"js/app.js":           {Data: []byte("export const x = 1;\n")},
		"vendor/chart.min.js": {Data: []byte("var c=1;")},
		"notes.md":            {Data: []byte("# not served")},
	})

	for _, c := range []struct{ path, location string }{{"/", "/ui/"}, {"/ui", "/ui/"}} {
		resp, _ := uiGet(t, http.MethodGet, hs.URL+c.path)
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != c.location {
			t.Errorf("GET %s: %d Location %q, want a redirect to %s", c.path, resp.StatusCode, resp.Header.Get("Location"), c.location)
		}
	}

	resp, body := uiGet(t, http.MethodGet, hs.URL+"/ui/")
	if resp.StatusCode != http.StatusOK || string(body) != index {
		t.Fatalf("GET /ui/ without a key: %d %q", resp.StatusCode, body)
	}
	h := resp.Header
	if h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" || h.Get("Content-Encoding") != "" {
		t.Errorf("GET /ui/ headers: %v", h)
	}
	etag := h.Get("ETag")

	resp, body = uiGet(t, http.MethodGet, hs.URL+"/ui/index.html", "If-None-Match", `"other", W/`+etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET with a matching ETag: %d %q, want 304", resp.StatusCode, body)
	}

	resp, body = uiGet(t, http.MethodGet, hs.URL+"/ui/", "Accept-Encoding", "br, gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip asked: headers %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); string(plain) != index {
		t.Errorf("gunzipped index = %q", plain)
	}
	if resp, _ := uiGet(t, http.MethodGet, hs.URL+"/ui/", "Accept-Encoding", "gzip;q=0"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip refused with q=0, sent %q", resp.Header.Get("Content-Encoding"))
	}

	for path, ct := range map[string]string{"/ui/app.css": "text/css; charset=utf-8", "/ui/js/app.js": "text/javascript; charset=utf-8",
		"/ui/vendor/chart.min.js": "text/javascript; charset=utf-8"} {
		resp, _ := uiGet(t, http.MethodGet, hs.URL+path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct {
			t.Errorf("GET %s: %d %q, want %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ct)
		}
	}
	resp, body = uiGet(t, http.MethodHead, hs.URL+"/ui/app.css")
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") != "15" {
		t.Errorf("HEAD: %d %q length %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}

	// Unknown types, missing files and path tricks are 404s; the API still
	// wants its key.
	for _, p := range []string{"/ui/notes.md", "/ui/missing.js", "/ui/../v2/workers", "/ui/%2e%2e/v2/workers", "/ui/js/../../index.html", "/ui/js"} {
		if resp, _ := uiGet(t, http.MethodGet, hs.URL+p); resp.StatusCode != http.StatusNotFound && resp.StatusCode/100 != 3 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := uiGet(t, http.MethodGet, hs.URL+"/v2/workers"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/workers without a key: %d, want 401", resp.StatusCode)
	}
}

// A build without a dashboard says so.
func TestUIMissing(t *testing.T) {
	hs := uiServer(t, nil)
	resp, body := uiGet(t, http.MethodGet, hs.URL+"/ui/")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "no dashboard") {
		t.Errorf("GET /ui/ without files: %d %s", resp.StatusCode, body)
	}
}
