package remote

import (
	"os/exec"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ls", "ls"},
		{"/usr/bin/llorch", "/usr/bin/llorch"},
		{"--port=8080", "'--port=8080'"},
		{"", "''"},
		{"it's", `'it'\''s'`},
		{"a b", "'a b'"},
		{"$(id)", "'$(id)'"},
		{"~/x", "'~/x'"},
		{"*", "'*'"},
		{"A=b", "'A=b'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// hostile is a list of arguments a shell would misread if left unquoted.
var hostile = []string{
	"x; touch /tmp/pwned", "$(id)", "`id`", `"dq"`, "'sq'", "it's", "a\nb", "*", "?", "[a-z]",
	"~", "~root", "$HOME", "${HOME}", "a b\tc", "\\", "!!", "#c", "&", "|", ">x", "<x", "(", ")", "{", "}",
	"A=b", "-n", "", " ", "'", "''", "\x01\x7f", "é ü 日本",
}

// TestQuoteShellRoundTrip feeds quoted words to a local /bin/sh and checks
// that printf prints them back unchanged.
func TestQuoteShellRoundTrip(t *testing.T) {
	got := shPrint(t, hostile)
	if want := strings.Join(hostile, "\x00") + "\x00"; got != want {
		t.Fatalf("sh printed %q, want %q", got, want)
	}
}

func shPrint(t testing.TB, words []string) string {
	t.Helper()
	script := "printf '%s\\0' " + quoteArgv(words)
	out, err := exec.Command("/bin/sh", "-c", script).Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return string(out)
}

func FuzzQuote(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			t.Skip("a NUL byte cannot be passed in an argument")
		}
		q := Quote(s)
		if isSafeWord(s) && s != "" {
			if q != s {
				t.Fatalf("safe word %q quoted as %q", s, q)
			}
		} else if !strings.HasPrefix(q, "'") || !strings.HasSuffix(q, "'") {
			t.Fatalf("Quote(%q) = %q: not single-quoted", s, q)
		}
		if got := shPrint(t, []string{s}); got != s+"\x00" {
			t.Fatalf("sh read Quote(%q) = %q back as %q", s, q, got)
		}
	})
}
