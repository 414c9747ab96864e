package orchestrator

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// The dashboard: the files of Deps.UI (embed/ui in the binary) served at
// /ui/, read once at startup, each with its content type, an ETag and a
// gzipped copy. Nothing in them depends on the orchestrator's state or
// keys: the page asks the API for everything, with the key the operator
// types in, so /ui itself tells nothing to whoever has no key.

// uiCSP is the dashboard's Content-Security-Policy: scripts, styles and
// requests from this origin only (an air-gapped cluster loads nothing
// else), no inline script or style, no framing, no forms posting anywhere.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiFile is one file of the dashboard, ready to serve.
type uiFile struct {
	body, gz    []byte // gz is nil when gzip does not make it smaller
	contentType string
	etag        string
}

// uiTypes are the content types of the dashboard's files, by extension:
// fixed here rather than read from the system's MIME tables, which differ.
var uiTypes = map[string]string{
	".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
	".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
	".woff2": "font/woff2", ".txt": "text/plain; charset=utf-8", ".map": "application/json",
}

// loadUI reads every file of fsys; files of unknown types are left out.
func loadUI(fsys fs.FS) (map[string]*uiFile, error) {
	files := map[string]*uiFile{}
	if fsys == nil {
		return files, nil
	}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := uiTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &uiFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if buf.Len() < len(body) {
			f.gz = buf.Bytes()
		}
		files[p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: reading the dashboard's files: %w", err)
	}
	return files, nil
}

// uiRoutes serves the dashboard at /ui/ and sends / there.
func (s *Server) uiRoutes(e *echo.Echo) {
	e.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ui/") })
	e.GET("/ui", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/ui/") })
	e.GET("/ui/*", s.handleUI)
	e.HEAD("/ui/*", s.handleUI)
}

func (s *Server) handleUI(c echo.Context) error {
	name := strings.TrimPrefix(c.Request().URL.Path, "/ui/")
	if name == "" {
		name = "index.html"
	}
	f := s.ui[name]
	if f == nil {
		if len(s.ui) == 0 {
			return writeError(c, api.Errorf(api.CodeNotFound, "this build has no dashboard"))
		}
		return writeError(c, api.Errorf(api.CodeNotFound, "no such file in the dashboard"))
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	// Files keep their names across versions: the browser may keep them
	// but asks each time (a 304 when unchanged), so an upgrade shows at once.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Type", f.contentType)
	if etagMatch(c.Request().Header.Get("If-None-Match"), f.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	body := f.body
	if f.gz != nil && acceptsGzip(c.Request().Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = f.gz
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := c.Response().Write(body)
	return err
}

// etagMatch reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (named,
// or "*", and not refused with q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if coding = strings.TrimSpace(coding); !strings.EqualFold(coding, "gzip") && coding != "*" {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}
