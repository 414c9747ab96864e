package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/synth"
)

// tinyGGUF returns the bytes of the tiny synthetic model (a valid GGUF file
// of about 0.3 MB), built once.
var tinyGGUF = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	if err := synth.Encode(&b, synth.Tiny()); err != nil {
		panic(err)
	}
	return b.Bytes()
})

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hubFile is one file on the fake hub and how the hub misbehaves with it.
type hubFile struct {
	body []byte
	// linkedETag is the X-Linked-Etag value; "" sends none.
	linkedETag string
	// direct serves the body on the resolve URL itself; otherwise the
	// resolve URL redirects to /cdn/… and the X-Linked-Etag rides on the
	// redirect, as on huggingface.co.
	direct bool
	// cutFirst: the first cutFirst body requests send half of what they
	// promise, then drop the connection.
	cutFirst int
	// blockFirst: the first body request sends half, then waits until the
	// client goes away.
	blockFirst bool
	// ignoreRange answers every request with 200 and the whole body.
	ignoreRange bool
	// status, when set, is the answer of the resolve URL.
	status int
	// etag is the body's ETag header (which If-Range is checked against).
	etag string
}

type hubReq struct {
	Path, Range, IfRange, Auth string
}

// hub is a local HTTP server that mimics the Hugging Face hub:
// /ORG/REPO/resolve/REV/PATH, /cdn/KEY and
// /api/models/ORG/REPO/tree/REV[/DIR].
type hub struct {
	srv   *httptest.Server
	mu    sync.Mutex
	files map[string]*hubFile // by "ORG/REPO/REV/PATH"
	trees map[string]string   // tree API path (after /api/models/) -> JSON
	reqs  []hubReq
	n     map[string]int // body requests per file
}

func newHub(t *testing.T) *hub {
	t.Helper()
	h := &hub{files: map[string]*hubFile{}, trees: map[string]string{}, n: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

// add puts (or replaces) a file on the hub and returns its hf: reference.
func (h *hub) add(repo, rev, path string, f *hubFile) Ref {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[repo+"/"+rev+"/"+path] = f
	org, name, _ := strings.Cut(repo, "/")
	return Ref{Kind: KindHF, Org: org, Repo: name, Path: path, Rev: rev}
}

// addTree sets the tree API answer for REPO at REV in DIR ("" for the top).
func (h *hub) addTree(repo, rev, dir, json string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := repo + "/tree/" + rev
	if dir != "" {
		key += "/" + dir
	}
	h.trees[key] = json
}

func (h *hub) downloader() *Downloader {
	return &Downloader{Endpoint: h.srv.URL, Client: h.srv.Client(), Attempts: 3, Backoff: time.Millisecond}
}

// requests returns the requests seen so far whose path starts with prefix.
func (h *hub) requests(prefix string) []hubReq {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hubReq
	for _, r := range h.reqs {
		if strings.HasPrefix(r.Path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	h.mu.Lock()
	h.reqs = append(h.reqs, hubReq{Path: p, Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range"), Auth: r.Header.Get("Authorization")})
	h.mu.Unlock()

	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		h.mu.Lock()
		js, found := h.trees[rest]
		h.mu.Unlock()
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, js)
		return
	}
	if key, ok := strings.CutPrefix(p, "/cdn/"); ok {
		h.mu.Lock()
		f := h.files[key]
		h.mu.Unlock()
		if f == nil {
			http.NotFound(w, r)
			return
		}
		h.serveBody(w, r, key, f)
		return
	}
	// /ORG/REPO/resolve/REV/PATH
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	key := parts[0] + "/" + parts[1] + "/" + parts[3] + "/" + parts[4]
	h.mu.Lock()
	f := h.files[key]
	h.mu.Unlock()
	switch {
	case f == nil:
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	case f.status != 0:
		http.Error(w, http.StatusText(f.status), f.status)
		return
	}
	if f.linkedETag != "" {
		w.Header().Set("X-Linked-Etag", f.linkedETag)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.body)))
	}
	if !f.direct {
		w.Header().Set("Location", "/cdn/"+(&url.URL{Path: key}).EscapedPath())
		w.WriteHeader(http.StatusFound)
		return
	}
	h.serveBody(w, r, key, f)
}

func (h *hub) serveBody(w http.ResponseWriter, r *http.Request, key string, f *hubFile) {
	h.mu.Lock()
	n := h.n[key]
	h.n[key]++
	h.mu.Unlock()
	cut := n < f.cutFirst
	block := f.blockFirst && n == 0
	if f.etag != "" {
		w.Header().Set("ETag", f.etag)
	}
	if !cut && !block && !f.ignoreRange {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
		return
	}
	body, status := f.body, http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !f.ignoreRange {
		start, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		if err != nil || start >= len(body) {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
		body, status = body[start:], http.StatusPartialContent
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if !cut && !block {
		w.Write(body)
		return
	}
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	if block {
		<-r.Context().Done()
		return
	}
	panic(http.ErrAbortHandler) // drops the connection
}
