package catalog

import (
	"errors"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/bind"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Ref
		str      string // String(); "" means in
		id       string
	}{
		{
			name: "hf default rev",
			in:   "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf",
			want: Ref{Kind: KindHF, Org: "Qwen", Repo: "Qwen2.5-0.5B-Instruct-GGUF", Path: "qwen2.5-0.5b-instruct-q4_0.gguf", Rev: "main"},
			str:  "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf@main",
			id:   "qwen2.5-0.5b-instruct-q4_0",
		},
		{
			name: "hf rev and folder",
			in:   "hf:org/repo/sub/dir/Model-Q8_0.GGUF@0123abcd",
			want: Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "sub/dir/Model-Q8_0.GGUF", Rev: "0123abcd"},
			id:   "Model-Q8_0",
		},
		{
			name: "hf at sign in file name",
			in:   "hf:org/repo/a@b.gguf",
			want: Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "a@b.gguf", Rev: "main"},
			str:  "hf:org/repo/a@b.gguf@main",
			id:   "a-b",
		},
		{
			name: "hf odd file name sanitized",
			in:   "hf:org/repo/..my model+v2.gguf@v1.0",
			want: Ref{Kind: KindHF, Org: "org", Repo: "repo", Path: "..my model+v2.gguf", Rev: "v1.0"},
			id:   "my-model-v2",
		},
		{
			name: "https",
			in:   "https://example.com/models/tiny-f16.gguf?download=true#frag",
			want: Ref{Kind: KindURL, URL: "https://example.com/models/tiny-f16.gguf?download=true"},
			str:  "https://example.com/models/tiny-f16.gguf?download=true",
			id:   "tiny-f16",
		},
		{
			name: "http loopback",
			in:   "http://127.0.0.1:8080/x/y.gguf",
			want: Ref{Kind: KindURL, URL: "http://127.0.0.1:8080/x/y.gguf"},
			id:   "y",
		},
		{
			name: "http localhost ipv6",
			in:   "http://[::1]:9/y.gguf",
			want: Ref{Kind: KindURL, URL: "http://[::1]:9/y.gguf"},
			id:   "y",
		},
		{
			name: "file",
			in:   "file:/srv/models/tiny.gguf",
			want: Ref{Kind: KindFile, File: "/srv/models/tiny.gguf"},
			id:   "tiny",
		},
		{
			name: "file triple slash",
			in:   "file:///srv/models/tiny.gguf",
			want: Ref{Kind: KindFile, File: "/srv/models/tiny.gguf"},
			str:  "file:/srv/models/tiny.gguf",
			id:   "tiny",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRef(tc.in)
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseRef(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := ParseRef(got.String())
			if err != nil || again != got {
				t.Errorf("ParseRef(String()) = %+v, %v; want %+v", again, err, got)
			}
			if id := got.DefaultID(); id != tc.id {
				t.Errorf("DefaultID() = %q, want %q", id, tc.id)
			}
		})
	}
}

func TestParseRefRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"bare name (an alias)", "qwen"},
		{"unknown scheme", "s3://bucket/x.gguf"},
		{"hf too short", "hf:org/x.gguf"},
		{"hf not gguf", "hf:org/repo/model.bin"},
		{"hf only extension", "hf:org/repo/.gguf"},
		{"hf dotdot path", "hf:org/repo/../x.gguf"},
		{"hf dotdot deep", "hf:org/repo/a/../../x.gguf"},
		{"hf dot segment", "hf:org/repo/./x.gguf"},
		{"hf dotdot org", "hf:../repo/x.gguf"},
		{"hf dotdot repo", "hf:org/../x.gguf"},
		{"hf dot repo", "hf:org/./x.gguf"},
		{"hf absolute path", "hf:org/repo//etc/x.gguf"},
		{"hf absolute org", "hf:/org/repo/x.gguf"},
		{"hf backslash", `hf:org/repo/..\..\x.gguf`},
		{"hf backslash org", `hf:o\rg/repo/x.gguf`},
		{"hf nul", "hf:org/repo/x\x00.gguf"},
		{"hf newline", "hf:org/repo/x\n.gguf"},
		{"hf c1 control", "hf:org/repo/x\u0085.gguf"},
		{"hf invalid utf8", "hf:org/repo/x\xff.gguf"},
		{"hf space in org", "hf:my org/repo/x.gguf"},
		{"hf empty rev", "hf:org/repo/x.gguf@"},
		{"hf dotdot rev", "hf:org/repo/x.gguf@.."},
		{"hf slash rev", "hf:org/repo/x.gguf@refs/pr/1"},
		{"hf percent org", "hf:org%2F../repo/x.gguf"},
		{"hf long org", "hf:" + strings.Repeat("a", 129) + "/repo/x.gguf"},
		{"http remote", "http://example.com/x.gguf"},
		{"https no path", "https://example.com"},
		{"https not gguf", "https://example.com/x.bin"},
		{"https dotdot", "https://example.com/a/../x.gguf"},
		{"https encoded dotdot", "https://example.com/a/%2e%2e/x.gguf"},
		{"https encoded slash dotdot", "https://example.com/a%2F..%2Fx.gguf"},
		{"https encoded nul", "https://example.com/a%00/x.gguf"},
		{"https backslash", `https://example.com/a\..\x.gguf`},
		{"https credentials", "https://user:pw@example.com/x.gguf"},
		{"https empty host", "https:///x.gguf"},
		{"ftp", "ftp://example.com/x.gguf"},
		{"file relative", "file:models/x.gguf"},
		{"file dotdot", "file:/srv/models/../x.gguf"},
		{"file double slash", "file:/srv//x.gguf"},
		{"file host", "file://host/x.gguf"},
		{"file not gguf", "file:/srv/x.bin"},
		{"file backslash", `file:/srv/a\b.gguf`},
		{"file nul", "file:/srv/x\x00.gguf"},
		{"too long", "hf:org/repo/" + strings.Repeat("a", maxRefLen) + ".gguf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRef(tc.in)
			if err == nil {
				t.Fatalf("ParseRef(%q) = %+v, want an error", tc.in, r)
			}
			if !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("error %v does not wrap ErrInvalidRef", err)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"qwen2.5-0.5b-instruct-q4_0", true},
		{"a", true},
		{"A_b.C-9", true},
		{".hidden", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{".", false},
		{"..", false},
		{strings.Repeat("x", 129), false},
		{"a/b", false},
		{"../x", false},
		{`a\b`, false},
		{"a b", false},
		{"a\x00", false},
		{"é", false},
		{"a:b", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidID(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidID(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v does not wrap ErrInvalidID", err)
			}
		})
	}
}

func TestDefaultIDEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		ref  Ref
		want string
	}{
		{Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "-.gguf", Rev: "main"}, "model"},
		{Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "..gguf", Rev: "main"}, "model"},
		{Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "d/" + strings.Repeat("y", 300) + ".gguf", Rev: "main"}, strings.Repeat("y", 128)},
		{Ref{Kind: KindHF, Org: "o", Repo: "r", Path: "Ünïcode.gguf", Rev: "main"}, "n--code"},
		{Ref{}, "model"},
	} {
		if got := tc.ref.DefaultID(); got != tc.want {
			t.Errorf("%+v.DefaultID() = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

// FuzzParseRef: ParseRef never panics; what it accepts is free of traversal,
// round-trips through String, yields a valid default id, and (for hf:) a
// resolve URL that stays under ORG/REPO/resolve/REV/.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_0.gguf",
		"hf:org/repo/sub/x.gguf@v1",
		"hf:org/repo/a@b.gguf@main",
		"hf:org/repo/../x.gguf",
		"https://example.com/m/x.gguf?a=b#c",
		"http://127.0.0.1:1/x.gguf",
		"https://example.com/a/%2e%2e/x.gguf",
		"file:/srv/x.gguf",
		"file:///srv/x.gguf",
		"file:/srv/../x.gguf",
		"hf:a/b/c\\d.gguf",
	} {
		f.Add(s)
	}
	ep, err := url.Parse(DefaultEndpoint)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("error %v does not wrap ErrInvalidRef", err)
			}
			return
		}
		switch r.Kind {
		case KindHF:
			for _, name := range []string{r.Org, r.Repo, r.Rev} {
				if checkName("name", name) != nil {
					t.Fatalf("accepted unsafe name %q in %q", name, s)
				}
			}
			checkSegments(t, s, r.Path)
			u, err := url.Parse(resolveURL(ep, r))
			if err != nil {
				t.Fatalf("resolve URL of %q does not parse: %v", s, err)
			}
			prefix := "/" + r.Org + "/" + r.Repo + "/resolve/" + r.Rev + "/"
			if !strings.HasPrefix(path.Clean(u.Path), prefix) || u.Path != "/"+r.Org+"/"+r.Repo+"/resolve/"+r.Rev+"/"+r.Path {
				t.Fatalf("resolve URL path %q of %q escapes %q", u.Path, s, prefix)
			}
		case KindURL:
			u, err := url.Parse(r.URL)
			if err != nil {
				t.Fatalf("accepted URL %q does not parse: %v", r.URL, err)
			}
			if u.Scheme != "https" && !(u.Scheme == "http" && bind.Loopback(u.Hostname())) {
				t.Fatalf("accepted URL %q with scheme %q", r.URL, u.Scheme)
			}
			checkSegments(t, s, strings.TrimPrefix(u.Path, "/"))
		case KindFile:
			if !filepath.IsAbs(r.File) || filepath.Clean(r.File) != r.File || strings.ContainsAny(r.File, "\\\x00") {
				t.Fatalf("accepted unsafe file path %q", r.File)
			}
		default:
			t.Fatalf("unknown kind %q", r.Kind)
		}
		id := r.DefaultID()
		if err := ValidID(id); err != nil {
			t.Fatalf("DefaultID of %q = %q: %v", s, id, err)
		}
		dir := "/models"
		if j := filepath.Join(dir, id); filepath.Dir(j) != dir {
			t.Fatalf("id %q escapes the models directory: %q", id, j)
		}
		again, err := ParseRef(r.String())
		if err != nil {
			t.Fatalf("String() %q of accepted %q does not parse: %v", r.String(), s, err)
		}
		if again != r {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, r)
		}
	})
}

func checkSegments(t *testing.T, s, p string) {
	t.Helper()
	if p == "" {
		t.Fatalf("accepted %q with an empty path", s)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
			t.Fatalf("accepted %q with path segment %q", s, seg)
		}
	}
	if checkText(p) != nil {
		t.Fatalf("accepted %q with control characters in %q", s, p)
	}
}
