package catalog

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/llorch/llorch/core/buildinfo"
)

// DefaultEndpoint is the Hugging Face endpoint used when Downloader.Endpoint
// is empty.
const DefaultEndpoint = "https://huggingface.co"

// Defaults for the zero values of the Downloader fields.
const (
	DefaultAttempts     = 5
	DefaultBackoff      = time.Second
	DefaultStallTimeout = 60 * time.Second
	maxBackoff          = 30 * time.Second
	maxTreeBytes        = 16 << 20 // bound on a tree API answer
	copyBufferSize      = 256 << 10
)

// Downloader fetches model files (see the package documentation for the
// protocol). The zero value is ready to use; its fields are read-only while
// downloads run, so one Downloader may serve concurrent downloads to
// different destinations (their progress then shares one writer).
type Downloader struct {
	// Client makes the requests. nil means http.DefaultClient (no overall
	// timeout: large files take long; StallTimeout catches dead transfers).
	Client *http.Client
	// Endpoint is the Hugging Face endpoint ($HF_ENDPOINT); "" means
	// DefaultEndpoint. It must be https, or http on a loopback host.
	Endpoint string
	// Token ($HF_TOKEN) is sent as "Authorization: Bearer TOKEN" to the
	// endpoint's host only (hf: references, URLs on that host, the tree API).
	Token string
	// Progress receives the progress display and messages; nil is silent.
	// A terminal (*os.File) gets a progress bar, anything else plain lines.
	Progress io.Writer
	// OnProgress, when set, is called on the download's goroutine as a
	// transfer pass begins and as bytes arrive, with the bytes of the file
	// in place so far and its total size (-1 when unknown). Hashing an
	// earlier partial file is not reported. The callee throttles.
	OnProgress func(done, total int64)
	// Attempts bounds the consecutive failed requests that brought no new
	// bytes; a request that made progress starts the count again. 0 means
	// DefaultAttempts.
	Attempts int
	// Backoff is the wait after the first failure; it doubles after each
	// further one, up to 30s (or Backoff, if larger), and each wait is drawn
	// between half of it and all of it. 0 means DefaultBackoff.
	Backoff time.Duration
	// StallTimeout aborts and retries a request that received no byte for
	// this long. 0 means DefaultStallTimeout.
	StallTimeout time.Duration
}

// Result describes a model file in place.
type Result struct {
	// Path is the final file: dest for downloads, the file itself for file: refs.
	Path string `json:"path"`
	// SHA256 is the lowercase hex sha256 of the whole file.
	SHA256 string `json:"sha256"`
	// Size is the file size in bytes.
	Size int64 `json:"size"`
	// Verified is true when SHA256 matched the source's published sha256
	// (the hub's LFS id); false when the source published none.
	Verified bool `json:"verified"`
	// Resumed is true when the file was completed from a partial download
	// (an earlier run's .part or an interrupted request) rather than in one
	// request from byte 0.
	Resumed bool `json:"resumed"`
	// Source is the URL the bytes came from; empty for file: refs.
	Source string `json:"source,omitempty"`
}

// HTTPError is an unexpected HTTP status. It wraps ErrNotFound for 404 and
// ErrAccessDenied for 401 and 403.
type HTTPError struct {
	URL        string // the requested URL, without its query
	StatusCode int
	Status     string
	Hint       string // what the user can do, if anything
}

func (e *HTTPError) Error() string {
	s := "GET " + e.URL + ": " + e.Status
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *HTTPError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrAccessDenied
	}
	return nil
}

// Download fetches r into dest (the final path in the models directory) and
// verifies it, as described in the package documentation: it streams into
// dest+".part", resumes and retries, checks the sha256 and the GGUF magic,
// then renames the .part to dest (replacing any file there). When ctx is
// cancelled or the attempts run out, the .part is kept for a later call to
// resume; when a check fails it is removed.
//
// A file: reference is registered in place: dest is not used, nothing is
// copied, and the Result describes the file itself (hashed, unverified).
func (d *Downloader) Download(ctx context.Context, r Ref, dest string) (Result, error) {
	pr, err := ParseRef(r.String()) // hand-built refs get the same checks
	if err != nil {
		return Result{}, fmt.Errorf("download: %w", err)
	}
	r = pr
	if r.Kind == KindFile {
		return d.register(ctx, r)
	}
	name := r.redacted()
	if dest == "" || strings.HasSuffix(dest, string(filepath.Separator)) {
		return Result{}, fmt.Errorf("download %s: destination %q is not a file path", name, dest)
	}
	ep, err := d.endpoint()
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w", name, err)
	}
	t := &transfer{
		d:     d,
		ref:   r,
		ep:    ep,
		part:  dest + ".part",
		meta:  dest + ".part.meta",
		h:     sha256.New(),
		total: -1,
		prog:  newProgress(d.Progress, filepath.Base(dest)),
	}
	if d.OnProgress != nil {
		if t.prog == nil {
			t.prog = newProgress(io.Discard, filepath.Base(dest))
		}
		t.prog.onBytes = d.OnProgress
	}
	t.setSource()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("download %s: %w", name, err)
	}
	if err := t.loadMeta(); err != nil {
		return Result{}, fmt.Errorf("download %s: %w", name, err)
	}
	if err := t.run(ctx); err != nil {
		return Result{}, fmt.Errorf("download %s: %w", name, err)
	}
	res, err := t.finish(ctx, dest)
	if err != nil {
		return Result{}, fmt.Errorf("download %s: %w", name, err)
	}
	return res, nil
}

// endpoint returns the validated hub endpoint without a trailing slash.
func (d *Downloader) endpoint() (*url.URL, error) {
	s := d.Endpoint
	if s == "" {
		s = DefaultEndpoint
	}
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("hub endpoint %q: %w", s, err)
	}
	if err := checkURL(u); err != nil {
		return nil, fmt.Errorf("hub endpoint %q: %w", s, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("hub endpoint %q: must not have a query or fragment", s)
	}
	return u, nil
}

func (d *Downloader) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	return http.DefaultClient
}

func (d *Downloader) attempts() int {
	if d.Attempts > 0 {
		return d.Attempts
	}
	return DefaultAttempts
}

func (d *Downloader) stallTimeout() time.Duration {
	if d.StallTimeout > 0 {
		return d.StallTimeout
	}
	return DefaultStallTimeout
}

// backoff returns the wait after the n-th consecutive failure (n >= 1).
func (d *Downloader) backoff(n int) time.Duration {
	b := d.Backoff
	if b <= 0 {
		b = DefaultBackoff
	}
	limit := max(b, maxBackoff)
	for i := 1; i < n && b < limit; i++ {
		b *= 2
	}
	b = min(b, limit)
	return b/2 + rand.N(b/2+1)
}

// register describes a local file: hashes it and checks the magic.
func (d *Downloader) register(ctx context.Context, r Ref) (Result, error) {
	prog := newProgress(d.Progress, filepath.Base(r.File))
	sum, size, err := hashFile(ctx, r.File, prog)
	if err != nil {
		return Result{}, fmt.Errorf("register %s: %w", r, err)
	}
	if err := checkMagic(r.File); err != nil {
		return Result{}, fmt.Errorf("register %s: %w", r, err)
	}
	return Result{Path: r.File, SHA256: sum, Size: size}, nil
}

// transfer is the state of one Download across its attempts.
type transfer struct {
	d         *Downloader
	ref       Ref
	ep        *url.URL
	src       string
	sendToken bool
	part      string
	meta      string // sidecar of the .part, see partMeta
	prog      *progress

	h       hash.Hash // sha256 of the first hashed bytes of the .part
	hashed  int64
	total   int64  // full size, -1 unknown
	want    string // expected sha256 from X-Linked-Etag
	etag    string // strong ETag of the body, sent as If-Range when resuming
	saved   partMeta
	resumed bool
}

// setSource sets the URL a transfer reads from (a hub reference resolved on
// the endpoint) and whether the hub token goes with it: only to the hub's
// own host.
func (t *transfer) setSource() {
	if t.ref.Kind == KindHF {
		t.src = resolveURL(t.ep, t.ref)
	} else {
		t.src = t.ref.URL
	}
	u, _ := url.Parse(t.src)
	t.sendToken = t.d.Token != "" && strings.EqualFold(u.Host, t.ep.Host)
}

// partMeta is the sidecar DEST.part.meta of a partial download. It ties the
// .part to its source, so that a later run resumes only the same download: a
// .part from another source is discarded, a changed X-Linked-Etag restarts,
// and the body's ETag goes out as If-Range, so a server whose file changed
// answers with the whole new file instead of a range to splice onto old bytes.
// A .part without a sidecar is resumed as is (the sha256 check still guards
// it when the hub publishes one).
type partMeta struct {
	Source     string `json:"source"`
	LinkedETag string `json:"linked_etag,omitempty"`
	ETag       string `json:"etag,omitempty"`
}

// loadMeta reads the sidecar, discarding a .part that belongs to another
// source (or whose sidecar is unreadable).
func (t *transfer) loadMeta() error {
	b, err := os.ReadFile(t.meta)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m partMeta
	if json.Unmarshal(b, &m) != nil || m.Source != t.src {
		t.prog.printf("discarding a partial download from another source")
		if err := os.Remove(t.part); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return os.Remove(t.meta)
	}
	t.saved = m
	t.want, _ = parseSHA256(m.LinkedETag)
	t.etag = m.ETag
	return nil
}

// saveMeta writes the sidecar when what it would say changed.
func (t *transfer) saveMeta() error {
	m := partMeta{Source: t.src, LinkedETag: t.want, ETag: t.etag}
	if m == t.saved {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(t.meta, b, 0o644); err != nil {
		return err
	}
	t.saved = m
	return nil
}

// removePart removes the .part and its sidecar.
func (t *transfer) removePart() {
	os.Remove(t.part)
	os.Remove(t.meta)
}

// Errors that steer the attempt loop.
var (
	errRestart = errors.New("starting over from byte 0")
	errStalled = errors.New("no data received within the stall timeout")
)

// retryable marks an error worth another attempt.
type retryable struct{ err error }

func (e retryable) Error() string { return e.err.Error() }
func (e retryable) Unwrap() error { return e.err }

// run performs attempts until the .part holds the whole body.
func (t *transfer) run(ctx context.Context) error {
	failures := 0
	for {
		n, err := t.attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w%s", context.Cause(ctx), t.keptNote())
		}
		if errors.Is(err, errRestart) {
			t.prog.printf("%v", err)
			continue
		}
		var re retryable
		if !errors.As(err, &re) {
			return err
		}
		if n > 0 {
			failures = 0
		}
		failures++
		if failures >= t.d.attempts() {
			return fmt.Errorf("giving up after %d failed attempts%s: %w", failures, t.keptNote(), err)
		}
		wait := t.d.backoff(failures)
		t.prog.printf("attempt failed: %v; retrying in %s", err, wait.Round(time.Millisecond))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w%s", context.Cause(ctx), t.keptNote())
		case <-timer.C:
		}
	}
}

// keptNote says where the partial download is kept, if there is one.
func (t *transfer) keptNote() string {
	if fi, err := os.Stat(t.part); err == nil && fi.Size() > 0 {
		return fmt.Sprintf(" (%s of partial download kept in %s; run again to resume)", formatBytes(fi.Size()), t.part)
	}
	return ""
}

// attempt makes one request and appends its body to the .part. It returns
// the bytes written. A nil error means the .part is complete.
func (t *transfer) attempt(ctx context.Context) (int64, error) {
	have, err := t.syncHash(ctx)
	if err != nil {
		return 0, err
	}

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := t.d.stallTimeout()
	watchdog := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(actx, http.MethodGet, t.src, nil)
	if err != nil {
		return 0, err
	}
	t.setHeaders(req)
	req.Header.Set("Accept-Encoding", "identity") // byte offsets must be file offsets
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if t.etag != "" {
			req.Header.Set("If-Range", t.etag)
		}
	}
	resp, err := t.d.client().Do(req)
	if err != nil {
		return 0, t.netErr(actx, err)
	}
	defer resp.Body.Close()
	if t.noteLinkedETag(resp) && have > 0 {
		// The file changed on the hub since the bytes we have were written.
		if err := t.reset(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("the file changed on the server during the download: %w", errRestart)
	}

	switch resp.StatusCode {
	case http.StatusOK:
		if have > 0 {
			t.prog.printf("the server sent the whole file instead of the range (it ignores ranges, or the file changed); starting over from byte 0")
			if err := t.reset(); err != nil {
				return 0, err
			}
			have = 0
		}
		t.resumed = false
		t.total = resp.ContentLength
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have || have == 0 {
			if err := t.reset(); err != nil {
				return 0, err
			}
			if have == 0 {
				return 0, retryable{fmt.Errorf("unexpected partial content %q for a full request", resp.Header.Get("Content-Range"))}
			}
			return 0, fmt.Errorf("server sent range %q for a request from byte %d: %w", resp.Header.Get("Content-Range"), have, errRestart)
		}
		t.total = total
		if t.total < 0 && resp.ContentLength >= 0 {
			t.total = have + resp.ContentLength
		}
		t.resumed = true
	case http.StatusRequestedRangeNotSatisfiable:
		_, total, _ := parseContentRange(resp.Header.Get("Content-Range"))
		if have > 0 && total == have {
			t.total = total // the .part already holds the whole file
			t.resumed = true
			return 0, nil
		}
		if have == 0 {
			return 0, t.statusErr(resp)
		}
		if err := t.reset(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("server cannot serve bytes from %d (size %d): %w", have, total, errRestart)
	default:
		return 0, t.statusErr(resp)
	}

	if et := resp.Header.Get("ETag"); strings.HasPrefix(et, `"`) {
		t.etag = et // strong validators only: If-Range refuses weak ones
	} else if resp.StatusCode == http.StatusOK {
		t.etag = ""
	}
	if err := t.saveMeta(); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(t.part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		f.Close()
		return 0, err
	}
	if have > 0 {
		t.prog.printf("resuming at %s", formatBytes(have))
	}
	t.prog.begin("download", t.total, have)
	n, err := t.copy(actx, f, resp.Body, watchdog, stall)
	if err == nil && t.total >= 0 && have+n != t.total {
		err = retryable{fmt.Errorf("got %d of %d bytes: %w", have+n, t.total, io.ErrUnexpectedEOF)}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	t.prog.end(err == nil)
	return n, err
}

// copy streams body to f, hashing what was written, until EOF.
func (t *transfer) copy(actx context.Context, f *os.File, body io.Reader, watchdog *time.Timer, stall time.Duration) (int64, error) {
	buf := make([]byte, copyBufferSize)
	var written int64
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			watchdog.Reset(stall)
			nw, werr := f.Write(buf[:nr])
			t.h.Write(buf[:nw])
			t.hashed += int64(nw)
			written += int64(nw)
			t.prog.add(int64(nw))
			if werr != nil {
				return written, werr // disk full, I/O error: not retried
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, t.netErr(actx, rerr)
		}
	}
}

// syncHash makes t.h cover exactly the bytes of the .part and returns their
// count. Bytes left by an earlier run are hashed here, before any request.
func (t *transfer) syncHash(ctx context.Context) (int64, error) {
	fi, err := os.Stat(t.part)
	if errors.Is(err, os.ErrNotExist) {
		t.h.Reset()
		t.hashed = 0
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", t.part)
	}
	size := fi.Size()
	if size == t.hashed {
		return size, nil
	}
	t.h.Reset()
	t.hashed = 0
	f, err := os.Open(t.part)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	t.prog.printf("found a partial download (%s); hashing it before resuming", formatBytes(size))
	t.prog.begin("hash", size, 0)
	n, err := copyCtx(ctx, t.h, io.LimitReader(f, size), t.prog)
	t.prog.end(err == nil)
	t.hashed = n
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("%s shrank while hashing it", t.part)
	}
	return size, nil
}

// reset empties the .part and the hash.
func (t *transfer) reset() error {
	t.h.Reset()
	t.hashed = 0
	t.resumed = false
	if err := os.Truncate(t.part, 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (t *transfer) setHeaders(req *http.Request) {
	req.Header.Set("User-Agent", "llorch/"+buildinfo.Version)
	if t.sendToken {
		req.Header.Set("Authorization", "Bearer "+t.d.Token)
	}
}

// noteLinkedETag records the sha256 in X-Linked-Etag, looking at the final
// response and at the redirects that led to it (the hub sends it on the
// redirect to its CDN). It reports whether it differs from one seen before.
func (t *transfer) noteLinkedETag(resp *http.Response) (changed bool) {
	for r := resp; r != nil; {
		if sum, ok := parseSHA256ETag(r.Header.Get("X-Linked-Etag")); ok {
			changed = t.want != "" && t.want != sum
			t.want = sum
			return changed
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	return false
}

// netErr classifies a transport error: the caller's cancellation is returned
// as is, a stall and other network errors are retryable, certificate errors
// are not.
func (t *transfer) netErr(actx context.Context, err error) error {
	if cause := context.Cause(actx); cause != nil {
		if errors.Is(cause, errStalled) {
			return retryable{errStalled}
		}
		return cause
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return err
	}
	return retryable{err}
}

// statusErr turns an unexpected status into an error; 408, 429 and 5xx are
// retryable.
func (t *transfer) statusErr(resp *http.Response) error {
	e := &HTTPError{URL: redactURL(t.src), StatusCode: resp.StatusCode, Status: resp.Status}
	switch resp.StatusCode {
	case http.StatusNotFound:
		if t.ref.Kind == KindHF {
			e.Hint = "not found on the hub: check the organization, repository, file path and revision"
		} else {
			e.Hint = "not found"
		}
	case http.StatusUnauthorized, http.StatusForbidden:
		switch {
		case t.ref.Kind != KindHF && !t.sendToken:
			e.Hint = "the server refused access"
		case t.sendToken:
			e.Hint = "the token in HF_TOKEN was refused or has no access to this repository; for a gated model, accept its terms on the hub first"
		default:
			e.Hint = "set HF_TOKEN to a Hugging Face token with access to this repository (gated and private models need one)"
		}
	}
	if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return retryable{e}
	}
	return e
}

// finish verifies the complete .part and renames it to dest.
func (t *transfer) finish(ctx context.Context, dest string) (Result, error) {
	sum := hex.EncodeToString(t.h.Sum(nil))
	want := t.want
	if want == "" && t.ref.Kind == KindHF {
		var err error
		if want, err = t.treeSHA256(ctx); err != nil {
			return Result{}, err
		}
	}
	if want != "" && want != sum {
		t.removePart()
		return Result{}, fmt.Errorf("%w: expected sha256 %s (published by the hub), got %s; the partial download was removed", ErrChecksumMismatch, want, sum)
	}
	if err := checkMagic(t.part); err != nil {
		t.removePart()
		return Result{}, fmt.Errorf("%w; the partial download was removed", err)
	}
	if err := syncFile(t.part); err != nil {
		return Result{}, err
	}
	if err := os.Rename(t.part, dest); err != nil {
		return Result{}, err
	}
	if err := syncFile(filepath.Dir(dest)); err != nil {
		return Result{}, err
	}
	os.Remove(t.meta)
	if want != "" {
		t.prog.printf("sha256 %s verified", sum)
	} else {
		t.prog.printf("sha256 %s (unverified: the source publishes no sha256)", sum)
	}
	return Result{Path: dest, SHA256: sum, Size: t.hashed, Verified: want != "", Resumed: t.resumed, Source: t.src}, nil
}

// treeSHA256 asks the hub's tree API for the file's LFS sha256:
// GET ENDPOINT/api/models/ORG/REPO/tree/REV[/DIR]. A failed lookup means
// "unknown" (""), except for the caller's cancellation.
func (t *transfer) treeSHA256(ctx context.Context) (string, error) {
	r := t.ref
	u := t.ep.String() + "/api/models/" + url.PathEscape(r.Org) + "/" + url.PathEscape(r.Repo) +
		"/tree/" + url.PathEscape(r.Rev)
	if dir := path.Dir(r.Path); dir != "." {
		u += "/" + escapePath(dir)
	}
	tctx, cancel := context.WithTimeout(ctx, t.d.stallTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, u, nil)
	if err != nil {
		return "", nil
	}
	t.setHeaders(req)
	resp, err := t.d.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		return "", nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil
	}
	var entries []struct {
		Path string `json:"path"`
		LFS  *struct {
			OID string `json:"oid"`
		} `json:"lfs"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTreeBytes)).Decode(&entries); err != nil {
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		return "", nil
	}
	for _, e := range entries {
		if e.Path == r.Path && e.LFS != nil {
			if sum, ok := parseSHA256(e.LFS.OID); ok {
				return sum, nil
			}
		}
	}
	return "", nil
}

// resolveURL is the hub's download URL of an hf: reference:
// ENDPOINT/ORG/REPO/resolve/REV/PATH, each part path-escaped.
func resolveURL(ep *url.URL, r Ref) string {
	return ep.String() + "/" + url.PathEscape(r.Org) + "/" + url.PathEscape(r.Repo) +
		"/resolve/" + url.PathEscape(r.Rev) + "/" + escapePath(r.Path)
}

// parseContentRange parses "bytes START-END/TOTAL" or "bytes */TOTAL" (RFC
// 9110: every number plain digits); start is -1 for the latter and total is
// -1 when it is "*" (not allowed with "*/").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return -1, -1, false
	}
	rng, tot, found := strings.Cut(strings.TrimSpace(rest), "/")
	if !found {
		return -1, -1, false
	}
	total = -1
	if tot != "*" {
		n, ok := parseDigits(tot)
		if !ok {
			return -1, -1, false
		}
		total = n
	}
	if rng == "*" {
		if total < 0 {
			return -1, -1, false
		}
		return -1, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return -1, -1, false
	}
	start, ok1 := parseDigits(a)
	end, ok2 := parseDigits(b)
	if !ok1 || !ok2 || end < start || (total >= 0 && end >= total) {
		return -1, -1, false
	}
	return start, total, true
}

// parseDigits parses 1*DIGIT that fits an int64 (no sign, no spaces).
func parseDigits(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// parseSHA256ETag extracts a sha256 from an ETag value such as
// "\"3a7b…\"" or W/"3a7b…".
func parseSHA256ETag(v string) (string, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	return parseSHA256(strings.Trim(v, `"`))
}

// parseSHA256 accepts 64 hex digits and returns them in lowercase.
func parseSHA256(s string) (string, bool) {
	if len(s) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return strings.ToLower(s), true
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// redactURL drops the query (which may hold signatures) from a URL for
// messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

// syncFile fsyncs a file or directory.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
