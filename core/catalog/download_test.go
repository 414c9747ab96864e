package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// quoted returns an ETag value for a sha256.
func quoted(sum string) string { return `"` + sum + `"` }

// checkDownloaded checks that dest holds want and that no .part is left.
func checkDownloaded(t *testing.T, res Result, dest string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the served %d bytes", dest, len(got), len(want))
	}
	if res.Path != dest || res.SHA256 != sha256Hex(want) || res.Size != int64(len(want)) {
		t.Fatalf("result %+v, want path %s sha256 %s size %d", res, dest, sha256Hex(want), len(want))
	}
	for _, p := range []string{dest + ".part", dest + ".part.meta"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind: %v", filepath.Base(p), err)
		}
	}
}

// checkNothing checks that neither dest nor its .part exists.
func checkNothing(t *testing.T, dest string) {
	t.Helper()
	for _, p := range []string{dest, dest + ".part", dest + ".part.meta"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists (err %v)", p, err)
		}
	}
}

func TestDownloadFull(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("Qwen/Tiny-GGUF", "main", "tiny-f16.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	var out bytes.Buffer
	d := h.downloader()
	d.Progress = &out
	dest := filepath.Join(t.TempDir(), "models", "tiny-f16.gguf")

	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Verified || res.Resumed {
		t.Errorf("Verified=%v Resumed=%v, want true false", res.Verified, res.Resumed)
	}
	if want := h.srv.URL + "/Qwen/Tiny-GGUF/resolve/main/tiny-f16.gguf"; res.Source != want {
		t.Errorf("Source = %q, want %q", res.Source, want)
	}
	if n := len(h.requests("/cdn/")); n != 1 {
		t.Errorf("%d body requests, want 1", n)
	}
	for _, want := range []string{"100%", "sha256 " + res.SHA256 + " verified"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDownloadResumesAfterCut(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), cutFirst: 1})
	dest := filepath.Join(t.TempDir(), "m.gguf")

	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Verified || !res.Resumed {
		t.Errorf("Verified=%v Resumed=%v, want true true", res.Verified, res.Resumed)
	}
	reqs := h.requests("/cdn/")
	if len(reqs) != 2 {
		t.Fatalf("body requests %+v, want 2", reqs)
	}
	if want := fmt.Sprintf("bytes=%d-", len(body)/2); reqs[0].Range != "" || reqs[1].Range != want {
		t.Errorf("ranges %q, %q; want none, then %q", reqs[0].Range, reqs[1].Range, want)
	}
}

func TestDownloadGivesUpThenRerunResumes(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), cutFirst: 1})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	d := h.downloader()
	d.Attempts = 1

	if _, err := d.Download(t.Context(), ref, dest); err == nil {
		t.Fatal("download through a cut connection with 1 attempt succeeded")
	}
	part, err := os.ReadFile(dest + ".part")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, body[:len(part)]) || len(part) == 0 {
		t.Fatalf(".part holds %d bytes that are not a prefix of the body", len(part))
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("final file exists after a failed download: %v", err)
	}

	// A later run (a new Downloader, as after a crash) resumes the .part.
	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Resumed || !res.Verified {
		t.Errorf("Verified=%v Resumed=%v, want true true", res.Verified, res.Resumed)
	}
	reqs := h.requests("/cdn/")
	if want := fmt.Sprintf("bytes=%d-", len(part)); reqs[len(reqs)-1].Range != want {
		t.Errorf("resume range %q, want %q", reqs[len(reqs)-1].Range, want)
	}
}

func TestDownloadResumesLeftoverPart(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	const k = 100_001
	if err := os.WriteFile(dest+".part", body[:k], 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d := h.downloader()
	d.Progress = &out

	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Resumed || !res.Verified {
		t.Errorf("Verified=%v Resumed=%v, want true true", res.Verified, res.Resumed)
	}
	reqs := h.requests("/cdn/")
	if len(reqs) != 1 || reqs[0].Range != fmt.Sprintf("bytes=%d-", k) {
		t.Errorf("body requests %+v, want one from byte %d", reqs, k)
	}
	if !strings.Contains(out.String(), "resuming at") {
		t.Errorf("progress output does not mention the resume:\n%s", out.String())
	}
}

func TestDownloadSourceChangedBetweenRuns(t *testing.T) {
	h := newHub(t)
	v1 := tinyGGUF()
	// The first run stops half-way; the hub publishes no sha256.
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: v1, etag: `"v1"`, cutFirst: 1, direct: true})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	d := h.downloader()
	d.Attempts = 1
	if _, err := d.Download(t.Context(), ref, dest); err == nil {
		t.Fatal("download through a cut connection with 1 attempt succeeded")
	}
	if _, err := os.Stat(dest + ".part.meta"); err != nil {
		t.Fatalf("no sidecar next to the .part: %v", err)
	}

	// Then the file changes on the server: the rerun must not splice.
	v2 := bytes.Clone(v1)
	for i := len(v2) - 1000; i < len(v2); i++ {
		v2[i] ^= 0xff
	}
	h.add("org/repo", "main", "m.gguf", &hubFile{body: v2, etag: `"v2"`, direct: true})
	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, v2)
	if res.Verified || res.Resumed {
		t.Errorf("Verified=%v Resumed=%v, want false false", res.Verified, res.Resumed)
	}
	reqs := h.requests("/org/")
	if last := reqs[len(reqs)-1]; last.Range == "" || last.IfRange != `"v1"` {
		t.Errorf("rerun request %+v, want a range with If-Range \"v1\"", last)
	}
	if _, err := os.Stat(dest + ".part.meta"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sidecar left behind: %v", err)
	}
}

func TestDownloadDiscardsPartOfOtherSource(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	os.WriteFile(dest+".part", body[:1000], 0o644)
	os.WriteFile(dest+".part.meta", []byte(`{"source":"https://elsewhere.example/m.gguf"}`), 0o644)

	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if res.Resumed {
		t.Error("resumed a .part of another source")
	}
	if reqs := h.requests("/cdn/"); len(reqs) != 1 || reqs[0].Range != "" {
		t.Errorf("body requests %+v, want one without a range", reqs)
	}
}

func TestDownloadLinkedETagChangedBetweenRuns(t *testing.T) {
	h := newHub(t)
	v1 := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: v1, linkedETag: quoted(sha256Hex(v1)), cutFirst: 1})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	d := h.downloader()
	d.Attempts = 1
	if _, err := d.Download(t.Context(), ref, dest); err == nil {
		t.Fatal("download through a cut connection with 1 attempt succeeded")
	}
	// A new commit on main: new bytes, new LFS id, no ETag on the CDN.
	v2 := bytes.Clone(v1)
	v2[len(v2)-1] ^= 1
	h.add("org/repo", "main", "m.gguf", &hubFile{body: v2, linkedETag: quoted(sha256Hex(v2))})
	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, v2)
	if !res.Verified || res.Resumed {
		t.Errorf("Verified=%v Resumed=%v, want true false", res.Verified, res.Resumed)
	}
}

func TestDownloadServerIgnoresRange(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), ignoreRange: true, direct: true})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	// A leftover .part whose bytes are wrong: they must not survive.
	if err := os.WriteFile(dest+".part", bytes.Repeat([]byte{0xee}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if res.Resumed || !res.Verified {
		t.Errorf("Verified=%v Resumed=%v, want true false", res.Verified, res.Resumed)
	}
	if reqs := h.requests("/org/"); len(reqs) != 1 || reqs[0].Range != "bytes=5000-" {
		t.Errorf("requests %+v, want one asking for bytes=5000-", reqs)
	}
}

func TestDownloadPartAlreadyComplete(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(dest+".part", body, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Verified || !res.Resumed {
		t.Errorf("Verified=%v Resumed=%v, want true true", res.Verified, res.Resumed)
	}
}

func TestDownloadPartLongerThanFile(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(dest+".part", append(bytes.Clone(body), "trailing junk"...), 0o644); err != nil {
		t.Fatal(err)
	}
	d := h.downloader()
	d.Attempts = 1 // the restart after 416 is not a failed attempt
	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if res.Resumed {
		t.Error("Resumed after a restart from byte 0")
	}
}

func TestDownloadChecksumMismatch(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	wrong := sha256Hex([]byte("something else"))
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(wrong)})
	dest := filepath.Join(t.TempDir(), "m.gguf")

	_, err := h.downloader().Download(t.Context(), ref, dest)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	for _, want := range []string{wrong, sha256Hex(body)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	checkNothing(t, dest)
}

func TestDownloadNotGGUF(t *testing.T) {
	h := newHub(t)
	body := []byte("<html>this is not a model</html>")
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	dest := filepath.Join(t.TempDir(), "m.gguf")

	_, err := h.downloader().Download(t.Context(), ref, dest)
	if !errors.Is(err, ErrNotGGUF) {
		t.Fatalf("err = %v, want ErrNotGGUF", err)
	}
	checkNothing(t, dest)
}

func TestDownloadHTTPErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		token  string
		is     error
		says   []string
	}{
		{"missing", 0, "", ErrNotFound, []string{"404", "not found on the hub", "/org/repo/resolve/main/missing.gguf"}},
		{"unauthorized", http.StatusUnauthorized, "", ErrAccessDenied, []string{"401", "set HF_TOKEN"}},
		{"forbidden with token", http.StatusForbidden, "hf_x", ErrAccessDenied, []string{"403", "token in HF_TOKEN was refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t)
			ref := Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "missing.gguf", Rev: "main"}
			if tc.status != 0 {
				ref = h.add("org/repo", "main", "missing.gguf", &hubFile{status: tc.status})
			}
			dest := filepath.Join(t.TempDir(), "m.gguf")
			d := h.downloader()
			d.Token = tc.token
			_, err := d.Download(t.Context(), ref, dest)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			var he *HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, not an *HTTPError", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if n := len(h.requests("/org/")); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
			checkNothing(t, dest)
		})
	}
}

func TestDownloadRetriesServerErrors(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	f := &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), status: http.StatusServiceUnavailable}
	ref := h.add("org/repo", "main", "m.gguf", f)
	dest := filepath.Join(t.TempDir(), "m.gguf")
	d := h.downloader()
	d.Attempts = 2

	_, err := d.Download(t.Context(), ref, dest)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want a 503 HTTPError", err)
	}
	if n := len(h.requests("/org/")); n != 2 {
		t.Errorf("%d requests, want 2 (Attempts)", n)
	}
}

func TestDownloadToken(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/private", "main", "sub/m.gguf", &hubFile{body: body})
	h.addTree("org/private", "main", "sub", fmt.Sprintf(`[{"type":"file","path":"sub/m.gguf","lfs":{"oid":%q,"size":%d}}]`, sha256Hex(body), len(body)))
	d := h.downloader()
	d.Token = "hf_secret"

	res, err := d.Download(t.Context(), ref, filepath.Join(t.TempDir(), "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified {
		t.Error("not verified through the tree API")
	}
	reqs := h.requests("/")
	if len(reqs) != 3 {
		t.Fatalf("requests %+v, want resolve, cdn, tree", reqs)
	}
	for _, r := range reqs {
		if r.Auth != "Bearer hf_secret" {
			t.Errorf("%s: Authorization %q, want the bearer token", r.Path, r.Auth)
		}
	}

	// A URL on another host never sees the token.
	other := newHub(t)
	other.add("x/y", "main", "m.gguf", &hubFile{body: body, direct: true})
	u, err := ParseRef(other.srv.URL + "/x/y/resolve/main/m.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Download(t.Context(), u, filepath.Join(t.TempDir(), "m.gguf")); err != nil {
		t.Fatal(err)
	}
	for _, r := range other.requests("/") {
		if r.Auth != "" {
			t.Errorf("token sent to another host: %+v", r)
		}
	}
}

func TestDownloadTreeAPI(t *testing.T) {
	body := tinyGGUF()
	for _, tc := range []struct {
		name, tree string
		verified   bool
		is         error
	}{
		{"match", fmt.Sprintf(`[{"type":"file","path":"m.gguf","lfs":{"oid":%q}}]`, sha256Hex(body)), true, nil},
		{"mismatch", fmt.Sprintf(`[{"type":"file","path":"m.gguf","lfs":{"oid":%q}}]`, sha256Hex(nil)), false, ErrChecksumMismatch},
		{"no lfs entry", `[{"type":"file","path":"m.gguf","oid":"abc"}]`, false, nil},
		{"garbage", `{not json`, false, nil},
		{"no tree", "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t)
			ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, direct: true})
			if tc.tree != "" {
				h.addTree("org/repo", "main", "", tc.tree)
			}
			var out bytes.Buffer
			d := h.downloader()
			d.Progress = &out
			dest := filepath.Join(t.TempDir(), "m.gguf")
			res, err := d.Download(t.Context(), ref, dest)
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
				checkNothing(t, dest)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkDownloaded(t, res, dest, body)
			if res.Verified != tc.verified {
				t.Errorf("Verified = %v, want %v", res.Verified, tc.verified)
			}
			if !tc.verified && !strings.Contains(out.String(), "unverified") {
				t.Errorf("progress output does not say unverified:\n%s", out.String())
			}
			if n := len(h.requests("/api/models/org/repo/tree/main")); n != 1 {
				t.Errorf("%d tree requests, want 1", n)
			}
		})
	}
}

func TestDownloadCancelKeepsPart(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), blockFirst: true})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	done := make(chan error, 1)
	go func() {
		_, err := h.downloader().Download(ctx, ref, dest)
		done <- err
	}()
	// Cancel once the first half has reached the .part (the server then
	// waits for the client to go away).
	deadline := time.Now().Add(30 * time.Second)
	for {
		fi, err := os.Stat(dest + ".part")
		if err == nil && fi.Size() == int64(len(body)/2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the .part never held the first half (%d bytes) within 30s: %v, %v", len(body)/2, fi, err)
		}
		select {
		case err := <-done:
			t.Fatalf("download ended before the cancel: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if fi, err := os.Stat(dest + ".part"); err != nil || fi.Size() != int64(len(body)/2) {
		t.Fatalf(".part after cancel: %v, %v; want %d bytes", fi, err, len(body)/2)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("final file exists after cancel: %v", err)
	}

	res, err := h.downloader().Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Resumed || !res.Verified {
		t.Errorf("Verified=%v Resumed=%v, want true true", res.Verified, res.Resumed)
	}
}

func TestDownloadStallRetries(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("org/repo", "main", "m.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body)), blockFirst: true})
	dest := filepath.Join(t.TempDir(), "m.gguf")
	d := h.downloader()
	d.StallTimeout = 50 * time.Millisecond

	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Resumed {
		t.Error("not resumed after the stall")
	}
}

func TestDownloadHTTPSURL(t *testing.T) {
	body := tinyGGUF()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/tiny.gguf" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Linked-Etag", quoted(sha256Hex(body)))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	defer srv.Close()
	ref, err := ParseRef(srv.URL + "/files/tiny.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if got := ref.DefaultID(); got != "tiny" {
		t.Errorf("DefaultID = %q", got)
	}
	d := &Downloader{Client: srv.Client(), Backoff: time.Millisecond}
	dest := filepath.Join(t.TempDir(), "tiny.gguf")
	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if !res.Verified {
		t.Error("X-Linked-Etag on a URL download not used")
	}

	missing, err := ParseRef(srv.URL + "/files/missing.gguf")
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Download(t.Context(), missing, dest+"2")
	if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "hub") {
		t.Errorf("err = %v, want a plain not found", err)
	}
}

func TestDownloadFileRef(t *testing.T) {
	dir := t.TempDir()
	body := tinyGGUF()
	good := filepath.Join(dir, "tiny.gguf")
	bad := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(good, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &Downloader{}
	ref, err := ParseRef("file:" + good)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Download(t.Context(), ref, "")
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Path: good, SHA256: sha256Hex(body), Size: int64(len(body))}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}

	for _, tc := range []struct {
		path string
		is   error
	}{
		{bad, ErrNotGGUF},
		{filepath.Join(dir, "missing.gguf"), ErrNotFound},
	} {
		ref, err := ParseRef("file:" + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Download(t.Context(), ref, ""); !errors.Is(err, tc.is) {
			t.Errorf("%s: err = %v, want %v", tc.path, err, tc.is)
		}
	}
}

func TestDownloadRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	good := Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "m.gguf", Rev: "main"}
	for _, tc := range []struct {
		name string
		d    Downloader
		ref  Ref
		dest string
	}{
		{"traversal in hand-built ref", Downloader{}, Ref{Kind: KindHF, Org: "..", Repo: "repo", Path: "m.gguf", Rev: "main"}, filepath.Join(dir, "m.gguf")},
		{"traversal in path", Downloader{}, Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "../../m.gguf", Rev: "main"}, filepath.Join(dir, "m.gguf")},
		{"zero ref", Downloader{}, Ref{}, filepath.Join(dir, "m.gguf")},
		{"http endpoint", Downloader{Endpoint: "http://hub.example.com"}, good, filepath.Join(dir, "m.gguf")},
		{"endpoint with credentials", Downloader{Endpoint: "https://u:p@hub.example.com"}, good, filepath.Join(dir, "m.gguf")},
		{"empty dest", Downloader{}, good, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.d.Download(t.Context(), tc.ref, tc.dest); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// fakeTransport answers every request with the status from fn, without a
// network; it is for synctest bubbles, where real sockets do not belong.
type fakeTransport struct {
	calls int
	fn    func(n int) int
}

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls++
	status := f.fn(f.calls)
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r,
	}, nil
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{fn: func(int) int { return http.StatusServiceUnavailable }}
		d := &Downloader{Client: &http.Client{Transport: tr}, Attempts: 4, Backoff: time.Second}
		ref := Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "m.gguf", Rev: "main"}
		start := time.Now()
		_, err := d.Download(t.Context(), ref, filepath.Join(t.TempDir(), "m.gguf"))
		elapsed := time.Since(start)
		var he *HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("err = %v, want a 503", err)
		}
		if tr.calls != 4 {
			t.Errorf("%d requests, want 4", tr.calls)
		}
		// Waits of 1s, 2s and 4s, each drawn from [half, all].
		if lo, hi := 3500*time.Millisecond, 7*time.Second; elapsed < lo || elapsed > hi {
			t.Errorf("waited %v in all, want between %v and %v", elapsed, lo, hi)
		}
	})
}

func TestRetryBackoffCap(t *testing.T) {
	d := &Downloader{Backoff: 10 * time.Second}
	for n := 1; n < 70; n++ {
		if w := d.backoff(n); w > maxBackoff || w < maxBackoff/2 && n > 3 || w < 0 {
			t.Fatalf("backoff(%d) = %v", n, w)
		}
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{fn: func(int) int { return http.StatusBadGateway }}
		d := &Downloader{Client: &http.Client{Transport: tr}, Attempts: 10, Backoff: time.Hour}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Minute, cancel)
		ref := Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "m.gguf", Rev: "main"}
		start := time.Now()
		_, err := d.Download(ctx, ref, filepath.Join(t.TempDir(), "m.gguf"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if el := time.Since(start); el != time.Minute {
			t.Errorf("returned after %v, want at the cancel (1m)", el)
		}
		if tr.calls != 1 {
			t.Errorf("%d requests, want 1", tr.calls)
		}
	})
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes */10", -1, 10, true},
		{"bytes 5-4/10", -1, -1, false},
		{"bytes 5-10/10", -1, -1, false},
		{"bytes -1-3/10", -1, -1, false},
		{"bytes +1-3/10", -1, -1, false},
		{"bytes 1-3/-0", -1, -1, false},
		{"bytes */*", -1, -1, false},
		{"items 0-1/2", -1, -1, false},
		{"", -1, -1, false},
	} {
		start, total, ok := parseContentRange(tc.in)
		if start != tc.start || total != tc.total || ok != tc.ok {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, total, ok, tc.start, tc.total, tc.ok)
		}
	}
}

func TestParseSHA256ETag(t *testing.T) {
	sum := sha256Hex(nil)
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{quoted(sum), sum, true},
		{`W/"` + strings.ToUpper(sum) + `"`, sum, true},
		{sum, sum, true},
		{`"0123abcd"`, "", false}, // a git blob id, not a sha256
		{`"` + strings.Repeat("g", 64) + `"`, "", false},
		{"", "", false},
	} {
		got, ok := parseSHA256ETag(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSHA256ETag(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseContentRange: a server's Content-Range is hostile. Whatever it
// says, an accepted range starts at a byte the total can hold, every number
// was written as plain digits (RFC 9110: 1*DIGIT), and writing the range
// back and parsing it again gives the same answer.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes */10", "bytes 5-4/10", "bytes +1-2/3",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes 1--2/3", " bytes 0-0/1 ", "bytes 0-0/-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := parseContentRange(s)
		if !ok {
			if start != -1 || total != -1 {
				t.Fatalf("rejected %q but returned %d, %d", s, start, total)
			}
			return
		}
		if start < -1 || total < -1 || (start >= 0 && total >= 0 && start >= total) || (start == -1 && total == -1) {
			t.Fatalf("%q: start %d, total %d", s, start, total)
		}
		if rest := strings.TrimSpace(strings.TrimPrefix(s, "bytes ")); !contentRangeSyntax.MatchString(rest) {
			t.Fatalf("%q accepted, but %q is not START-END/TOTAL or */TOTAL in digits", s, rest)
		}
		again := "bytes */"
		if start >= 0 {
			again = fmt.Sprintf("bytes %d-%d/", start, start)
		}
		if total >= 0 {
			again += strconv.FormatInt(total, 10)
		} else {
			again += "*"
		}
		if s2, t2, ok2 := parseContentRange(again); !ok2 || s2 != start || t2 != total {
			t.Fatalf("%q → %d, %d; written back as %q → %d, %d, %v", s, start, total, again, s2, t2, ok2)
		}
	})
}

var contentRangeSyntax = regexp.MustCompile(`^(\*/[0-9]+|[0-9]+-[0-9]+/(\*|[0-9]+))$`)

// FuzzParseSHA256ETag: an ETag or X-Linked-Etag is hostile. An accepted one
// yields 64 lowercase hex digits that the header carried (in any case).
func FuzzParseSHA256ETag(f *testing.F) {
	sum := sha256Hex(nil)
	for _, s := range []string{quoted(sum), `W/"` + strings.ToUpper(sum) + `"`, sum, `"0123abcd"`, `""` + sum + `""`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseSHA256ETag(s)
		if !ok {
			if got != "" {
				t.Fatalf("rejected %q but returned %q", s, got)
			}
			return
		}
		if len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "" {
			t.Fatalf("%q → %q: not 64 lowercase hex digits", s, got)
		}
		if !strings.Contains(strings.ToLower(s), got) {
			t.Fatalf("%q → %q: not what the header carried", s, got)
		}
	})
}

// OnProgress hears the bytes in place and the total, rising to the whole
// file, with no Progress writer.
func TestDownloadOnProgress(t *testing.T) {
	h := newHub(t)
	body := tinyGGUF()
	ref := h.add("Qwen/Tiny-GGUF", "main", "tiny-f16.gguf", &hubFile{body: body, linkedETag: quoted(sha256Hex(body))})
	d := h.downloader()
	d.Progress = nil
	var calls [][2]int64
	d.OnProgress = func(done, total int64) { calls = append(calls, [2]int64{done, total}) }
	dest := filepath.Join(t.TempDir(), "models", "tiny-f16.gguf")
	res, err := d.Download(t.Context(), ref, dest)
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, res, dest, body)
	if len(calls) < 2 || calls[0] != [2]int64{0, int64(len(body))} || calls[len(calls)-1] != [2]int64{int64(len(body)), int64(len(body))} {
		t.Fatalf("OnProgress calls %v (first and last), want from 0 to %d of %d", calls, len(body), len(body))
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0] < calls[i-1][0] {
			t.Fatalf("progress went back: %v", calls)
		}
	}
}
