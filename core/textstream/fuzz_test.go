package textstream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// trimIncomplete drops an incomplete UTF-8 character at the end of b (at most
// one can be there: only its first byte is not a continuation byte).
func trimIncomplete(b []byte) []byte {
	for k := 1; k < utf8.UTFMax && k <= len(b); k++ {
		if !utf8.FullRune(b[len(b)-k:]) {
			return b[:len(b)-k]
		}
	}
	return b
}

// reference decodes the whole input at once and looks for the first end
// position where the text ends with a stop (the longest one there).
func reference(input []byte, stops []string) (text string, stopped bool, matched string) {
	dec := strings.ToValidUTF8(string(trimIncomplete(input)), "\uFFFD")
	var pats, origs []string
	for _, s := range stops {
		if s != "" {
			pats = append(pats, strings.ToValidUTF8(s, "\uFFFD"))
			origs = append(origs, s)
		}
	}
	for e := 1; e <= len(dec); e++ {
		best := -1
		for i, p := range pats {
			if strings.HasSuffix(dec[:e], p) && (best < 0 || len(p) > len(pats[best])) {
				best = i
			}
		}
		if best >= 0 {
			return dec[:e-len(pats[best])], true, origs[best]
		}
	}
	return dec, false, ""
}

func FuzzStreamer(f *testing.F) {
	f.Add([]byte("Hello </s> world"), []byte{3, 2, 1}, "</s>", "", "", "")
	f.Add([]byte("a\xe4\xb8\x96\xff\xfe\xf0\x9f\x8e\x89b"), []byte{1, 1, 2, 3}, "\uFFFDb", "\x89", "", "")
	f.Add([]byte("abababc"), []byte{2, 2, 2}, "ababc", "bc", "abx", "b\xff")
	f.Add([]byte("\xc3"), []byte{0, 0}, "\xc3\xa9", "", "", "")
	f.Fuzz(func(t *testing.T, input, cuts []byte, s1, s2, s3, s4 string) {
		stops := []string{s1, s2, s3, s4}
		var pieces [][]byte
		rest := input
		for _, c := range cuts {
			n := min(int(c%8), len(rest))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		pieces = append(pieces, rest)

		st := New(stops)
		var out strings.Builder
		stopped, matched := false, ""
		for _, p := range pieces {
			text, ok, m := st.Push(p)
			if !utf8.ValidString(text) {
				t.Fatalf("Push emitted invalid UTF-8 %q", text)
			}
			if len(st.held) > 0 && len(st.held) >= maxStopLen(stops) {
				t.Fatalf("holding %d bytes with stops %q", len(st.held), stops)
			}
			out.WriteString(text)
			if ok {
				stopped, matched = true, m
				break
			}
		}
		if !stopped {
			text := st.Flush()
			if !utf8.ValidString(text) {
				t.Fatalf("Flush returned invalid UTF-8 %q", text)
			}
			out.WriteString(text)
		}
		got := out.String()

		for _, s := range stops {
			if p := strings.ToValidUTF8(s, "\uFFFD"); p != "" && strings.Contains(got, p) {
				t.Fatalf("output %q contains stop %q", got, s)
			}
		}
		wantText, wantStopped, wantMatched := reference(input, stops)
		if got != wantText || stopped != wantStopped || matched != wantMatched {
			t.Fatalf("pieces %q stops %q:\n got %q stopped=%v matched=%q\nwant %q stopped=%v matched=%q",
				pieces, stops, got, stopped, matched, wantText, wantStopped, wantMatched)
		}
		if !stopped && got != strings.ToValidUTF8(string(trimIncomplete(input)), "\uFFFD") {
			t.Fatalf("text %q differs from strings.ToValidUTF8 of the input", got)
		}
	})
}

func maxStopLen(stops []string) int {
	n := 0
	for _, s := range stops {
		n = max(n, len(strings.ToValidUTF8(s, "\uFFFD")))
	}
	return n
}
