// Package catalog names, fetches, verifies and inspects GGUF model files for
// a pool host. It is a library: the bbolt records and the CLI
// (`llorch pool models download|info|verify`) live elsewhere and call it.
//
// # References
//
// [ParseRef] accepts three forms:
//
//	hf:ORG/REPO/PATH.gguf[@REV]   a file in a Hugging Face model repository
//	https://HOST/…/FILE.gguf      any HTTPS URL (http:// only for loopback hosts)
//	file:/ABS/PATH.gguf           a local file, registered in place, not copied
//
// A Hugging Face reference resolves to $HF_ENDPOINT/ORG/REPO/resolve/REV/PATH
// (the caller passes the endpoint and token in [Downloader]; REV defaults to
// "main"). Every part of a reference is checked so that nothing derived from
// it can leave the models directory: no "." or ".." segments, no absolute
// paths, backslashes, NUL or control characters, and ORG, REPO and REV are
// plain names. [ValidID] checks model ids and aliases ([A-Za-z0-9._-], 1 to
// 128 bytes, not "." or ".."); [Ref.DefaultID] derives one from the file name.
//
// # Downloads
//
// [Downloader.Download] streams into DEST.part, hashing as it writes, and
// resumes with an HTTP Range request after a dropped connection (within the
// same call, with bounded, context-aware exponential backoff) or after a
// crash or Ctrl-C (a later call finds the .part, hashes its bytes first and
// asks for the rest). A sidecar, DEST.part.meta, records the source and its
// validators, so that only the same download is resumed and a file that
// changed on the server is fetched anew (If-Range) rather than spliced. A
// server that ignores Range is handled by starting over from byte 0; a 416
// answer either means the .part is already complete or starts the download
// over. 401, 403 and 404 are not retried.
//
// When the body is complete, its sha256 is compared with the hub's LFS id: the
// X-Linked-Etag header of the resolve response (also when it arrives on the
// redirect to the CDN) or, when absent, the lfs.oid of the file in the hub's
// tree API. When neither exists the computed sha256 is returned with
// Result.Verified false. The file must also start with the GGUF magic. A
// failed check removes the .part and returns an error naming the expected and
// actual values; a passed check fsyncs the file, renames it to DEST and
// fsyncs the directory, so DEST is either absent or complete.
//
// Progress goes to an io.Writer: a progress bar when it is a terminal, plain
// lines (every 10%, or every 10 seconds) otherwise.
//
// # Inspection
//
// [Inspect] reads a GGUF header with gguf-parser-go and reports the
// architecture, parameter count, file type, trained context length, chat
// template presence, size, and estimated RAM (CPU only) and VRAM (all layers
// offloaded) for a context size. gguf-parser-go is the project's one GGUF
// reader. [CheckComplete] (and Inspect) tell a file cut short, inside its
// header or its tensor data, from a whole one and say how short it is.
// [Verify] re-hashes a file against a recorded sha256.
//
// [EstimateFile] gives the same estimate broken down (weights, KV cache,
// overhead) for ctx tokens per slot × slots; [Downloader.EstimateRemote]
// does it for an hf: or https model from one range request of its first
// bytes (at most DefaultHeaderLimit). A header whose block_count is past
// [MaxBlockCount] is refused (the estimate walks every layer).
//
// Errors wrap the sentinels below with %w, so callers test them with
// errors.Is: [ErrInvalidRef], [ErrInvalidID], [ErrNotFound], [ErrAccessDenied],
// [ErrChecksumMismatch], [ErrNotGGUF] and [ErrTruncated].
package catalog

import "errors"

// Sentinel errors. Returned errors wrap them with the operation and details.
var (
	// ErrInvalidRef: a model reference is malformed or unsafe.
	ErrInvalidRef = errors.New("catalog: invalid reference")
	// ErrInvalidID: a model id or alias is not [A-Za-z0-9._-]{1,128} or is "." or "..".
	ErrInvalidID = errors.New("catalog: invalid model id")
	// ErrNotFound: the file does not exist (HTTP 404, or a missing local file).
	ErrNotFound = errors.New("catalog: not found")
	// ErrAccessDenied: the server answered 401 or 403.
	ErrAccessDenied = errors.New("catalog: access denied")
	// ErrChecksumMismatch: the sha256 of the bytes differs from the expected one.
	ErrChecksumMismatch = errors.New("catalog: checksum mismatch")
	// ErrNotGGUF: the file does not start with the GGUF magic or its header is malformed.
	ErrNotGGUF = errors.New("catalog: not a GGUF file")
	// ErrTruncated: the file is shorter than its own GGUF header says (a copy
	// or download cut short).
	ErrTruncated = errors.New("catalog: truncated file")
)
