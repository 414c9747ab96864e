package catalog

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/llorch/llorch/core/bind"
)

// Reference kinds, the values of [Ref.Kind].
const (
	KindHF   = "hf"   // a file in a Hugging Face model repository
	KindURL  = "url"  // an https:// (or loopback http://) URL
	KindFile = "file" // a local file, registered in place
)

// DefaultRev is the Hugging Face revision used when a reference names none.
const DefaultRev = "main"

// maxRefLen bounds the length of a reference string.
const maxRefLen = 4096

// maxIDLen is the longest model id or alias.
const maxIDLen = 128

const refForms = "want hf:ORG/REPO/FILE.gguf[@REV], https://HOST/…/FILE.gguf or file:/ABS/PATH.gguf"

// Ref is a parsed model reference. Build one with [ParseRef]; the fields that
// matter depend on Kind.
type Ref struct {
	Kind string `json:"kind"` // KindHF, KindURL or KindFile

	// KindHF: hf:Org/Repo/Path@Rev. Path may contain "/" (a file in a folder).
	Org  string `json:"org,omitempty"`
	Repo string `json:"repo,omitempty"`
	Path string `json:"path,omitempty"`
	Rev  string `json:"rev,omitempty"`

	// KindURL: the normalized URL (no fragment).
	URL string `json:"url,omitempty"`

	// KindFile: the absolute, clean path of the local file.
	File string `json:"file,omitempty"`
}

// ParseRef parses a model reference: hf:ORG/REPO/PATH.gguf[@REV],
// https://HOST/…/FILE.gguf (http:// only for loopback hosts) or
// file:/ABS/PATH.gguf (file:///ABS/PATH.gguf is accepted too; the path is not
// percent-decoded). Errors wrap [ErrInvalidRef] and say what is wrong.
//
// A catalog alias is not a reference: callers that accept aliases look them
// up first.
func ParseRef(s string) (Ref, error) {
	r, err := parseRef(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %s", ErrInvalidRef, truncate(s, 200), err.Error())
	}
	return r, nil
}

func parseRef(s string) (Ref, error) {
	if len(s) > maxRefLen {
		return Ref{}, fmt.Errorf("longer than %d bytes", maxRefLen)
	}
	if err := checkText(s); err != nil {
		return Ref{}, err
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(s, "hf:"):
		return parseHF(s[len("hf:"):])
	case strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "http://"):
		return parseURL(s)
	case strings.HasPrefix(s, "file:"):
		return parseFile(s[len("file:"):])
	}
	return Ref{}, fmt.Errorf("unknown form; %s", refForms)
}

// parseHF parses ORG/REPO/PATH.gguf[@REV].
func parseHF(s string) (Ref, error) {
	rev := DefaultRev
	// The revision follows the last '@', but only when what precedes it is a
	// .gguf path: "a@b.gguf" is a file name with an '@' in it.
	if i := strings.LastIndexByte(s, '@'); i >= 0 && hasGGUFSuffix(s[:i]) {
		rev = s[i+1:]
		s = s[:i]
		if err := checkName("revision", rev); err != nil {
			return Ref{}, err
		}
	}
	parts := strings.Split(s, "/")
	if len(parts) < 3 {
		return Ref{}, fmt.Errorf("want hf:ORG/REPO/FILE.gguf[@REV]")
	}
	org, repo, p := parts[0], parts[1], strings.Join(parts[2:], "/")
	if err := checkName("organization", org); err != nil {
		return Ref{}, err
	}
	if err := checkName("repository", repo); err != nil {
		return Ref{}, err
	}
	if err := checkRelPath(p); err != nil {
		return Ref{}, err
	}
	if !hasGGUFSuffix(p) {
		return Ref{}, fmt.Errorf("file %q does not end in .gguf", p)
	}
	return Ref{Kind: KindHF, Org: org, Repo: repo, Path: p, Rev: rev}, nil
}

func parseURL(s string) (Ref, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Ref{}, err
	}
	if err := checkURL(u); err != nil {
		return Ref{}, err
	}
	segs := strings.Split(u.Path, "/")
	if len(segs) < 2 || segs[0] != "" {
		return Ref{}, fmt.Errorf("URL has no file path")
	}
	if err := checkRelPath(strings.Join(segs[1:], "/")); err != nil {
		return Ref{}, err
	}
	if !hasGGUFSuffix(u.Path) {
		return Ref{}, fmt.Errorf("URL path does not end in .gguf")
	}
	u.Fragment, u.RawFragment = "", ""
	return Ref{Kind: KindURL, URL: u.String()}, nil
}

// checkURL accepts an absolute https URL, or http on a loopback host, with no
// credentials in it. It is shared by URL references and the hub endpoint.
func checkURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !bind.Loopback(u.Hostname()) {
			return fmt.Errorf("http:// is allowed only for loopback hosts; use https://")
		}
	default:
		return fmt.Errorf("scheme %q is not https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("URL has no host")
	}
	if u.User != nil {
		return fmt.Errorf("URL must not carry credentials")
	}
	return nil
}

// parseFile parses /ABS/PATH.gguf or ///ABS/PATH.gguf.
func parseFile(s string) (Ref, error) {
	if strings.HasPrefix(s, "//") {
		s = s[2:] // file:///abs: empty host
		if !strings.HasPrefix(s, "/") {
			return Ref{}, fmt.Errorf("file: references name a local absolute path (file:/ABS/PATH.gguf)")
		}
	}
	if !filepath.IsAbs(s) || !strings.HasPrefix(s, "/") {
		return Ref{}, fmt.Errorf("file path %q is not absolute", s)
	}
	if strings.ContainsRune(s, '\\') {
		return Ref{}, fmt.Errorf("file path contains a backslash")
	}
	if filepath.Clean(s) != s {
		return Ref{}, fmt.Errorf("file path %q is not clean (want %q)", s, filepath.Clean(s))
	}
	if !hasGGUFSuffix(s) {
		return Ref{}, fmt.Errorf("file %q does not end in .gguf", s)
	}
	return Ref{Kind: KindFile, File: s}, nil
}

// String returns the reference in the form ParseRef accepts. For a parsed
// Ref, ParseRef(r.String()) returns r again.
func (r Ref) String() string {
	switch r.Kind {
	case KindHF:
		s := "hf:" + r.Org + "/" + r.Repo + "/" + r.Path
		if r.Rev != "" {
			s += "@" + r.Rev
		}
		return s
	case KindURL:
		return r.URL
	case KindFile:
		return "file:" + r.File
	}
	return ""
}

// redacted is String without a URL's query, which may hold signatures; for
// messages.
func (r Ref) redacted() string {
	if r.Kind == KindURL {
		return redactURL(r.URL)
	}
	return r.String()
}

// DefaultID derives a model id from the reference's file name: the base name
// without ".gguf", with every byte outside [A-Za-z0-9._-] replaced by '-',
// leading '.' and '-' removed and cut to 128 bytes; "model" if nothing is
// left. The result always passes [ValidID].
//
//	hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf -> qwen2.5-0.5b-instruct-q4_0
func (r Ref) DefaultID() string {
	var p string
	switch r.Kind {
	case KindHF:
		p = r.Path
	case KindURL:
		if u, err := url.Parse(r.URL); err == nil {
			p = u.Path
		}
	case KindFile:
		p = r.File
	}
	base := path.Base(p)
	if hasGGUFSuffix(base) {
		base = base[:len(base)-len(".gguf")]
	}
	b := []byte(base)
	for i, c := range b {
		if !idByte(c) {
			b[i] = '-'
		}
	}
	id := strings.TrimLeft(string(b), ".-")
	if len(id) > maxIDLen {
		id = id[:maxIDLen]
	}
	if ValidID(id) != nil {
		return "model"
	}
	return id
}

// ValidID reports whether s can name a model (an id or an alias): 1 to 128
// bytes of [A-Za-z0-9._-], and not "." or "..". Such a name is a single path
// element, so joining it to the models directory cannot leave it. The error
// wraps [ErrInvalidID].
func ValidID(s string) error {
	if err := checkName("model id", s); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidID, err.Error())
	}
	return nil
}

// checkName checks a plain name: [A-Za-z0-9._-]{1,128}, not "." or "..".
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxIDLen:
		return fmt.Errorf("%s is longer than %d bytes", what, maxIDLen)
	case s == "." || s == "..":
		return fmt.Errorf("%s %q is not allowed", what, s)
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return fmt.Errorf("%s %q contains %q; allowed: letters, digits, '.', '_', '-'", what, truncate(s, 140), rune(s[i]))
		}
	}
	return nil
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// checkRelPath checks a relative slash-separated path: non-empty segments, no
// "." or "..", no backslash (no absolute path, since the first segment must
// not be empty).
func checkRelPath(p string) error {
	if p == "" {
		return fmt.Errorf("file path is empty")
	}
	if strings.ContainsRune(p, '\\') {
		return fmt.Errorf("file path contains a backslash")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("file path %q is absolute or has an empty segment", p)
		case ".", "..":
			return fmt.Errorf("file path %q contains a %q segment", p, seg)
		}
	}
	return checkText(p)
}

// checkText rejects invalid UTF-8, NUL and control characters.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, c := range s {
		if c == 0 || unicode.IsControl(c) {
			return fmt.Errorf("contains control character %U", c)
		}
	}
	return nil
}

func hasGGUFSuffix(s string) bool {
	const ext = ".gguf"
	return len(s) > len(ext) && strings.EqualFold(s[len(s)-len(ext):], ext) && s[len(s)-len(ext)-1] != '/'
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
