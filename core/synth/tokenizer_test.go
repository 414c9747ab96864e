package synth

import (
	"strings"
	"testing"
	"unicode"
)

func TestByteToRune(t *testing.T) {
	m := ByteToRune()
	seen := map[rune]bool{}
	for b, r := range m {
		if seen[r] {
			t.Fatalf("rune %U used twice", r)
		}
		seen[r] = true
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			t.Errorf("byte %#02x maps to unprintable %U", b, r)
		}
	}
	if m[' '] != 'Ġ' || m['\n'] != 'Ċ' || m['a'] != 'a' {
		t.Errorf("space %q, newline %q, a %q", m[' '], m['\n'], m['a'])
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	got, err := DecodeToken(EncodeBytes(all))
	if err != nil || string(got) != string(all) {
		t.Errorf("DecodeToken(EncodeBytes(all bytes)) = %v, %v", got, err)
	}
	if _, err := DecodeToken("ok\u0400"); err == nil {
		t.Error("DecodeToken accepted a character outside the map")
	}
}

func TestVocab(t *testing.T) {
	for _, p := range []Preset{Tiny(), Qwen05()} {
		t.Run(p.Name, func(t *testing.T) {
			v, err := NewVocab(p.VocabSize, p.Merges)
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Tokens) != p.VocabSize || len(v.Types) != p.VocabSize {
				t.Fatalf("%d tokens, %d types, want %d", len(v.Tokens), len(v.Types), p.VocabSize)
			}
			if len(v.Merges) != p.Merges {
				t.Errorf("%d merges, want %d", len(v.Merges), p.Merges)
			}
			ids := map[string]int{}
			for id, text := range v.Tokens {
				if prev, dup := ids[text]; dup {
					t.Fatalf("token %q at %d and %d", text, prev, id)
				}
				ids[text] = id
				switch v.Types[id] {
				case TokenTypeNormal:
					if _, err := DecodeToken(text); err != nil {
						t.Fatal(err)
					}
				case TokenTypeControl:
				default:
					t.Fatalf("token %d has type %d", id, v.Types[id])
				}
			}
			for b := range 256 {
				if got, _ := DecodeToken(v.Tokens[b]); len(got) != 1 || got[0] != byte(b) {
					t.Fatalf("token %d is %q, not byte %d", b, v.Tokens[b], b)
				}
			}
			for _, m := range v.Merges {
				left, right, ok := strings.Cut(m, " ")
				if !ok || left == "" || right == "" || strings.Contains(right, " ") {
					t.Fatalf("malformed merge %q", m)
				}
				for _, part := range []string{left, right, left + right} {
					if _, ok := ids[part]; !ok {
						t.Fatalf("merge %q: %q is not a token", m, part)
					}
				}
			}
			for text, id := range map[string]int{EndOfText: v.EndOfText, IMStart: v.IMStart, IMEnd: v.IMEnd} {
				if v.Tokens[id] != text || v.Types[id] != TokenTypeControl {
					t.Errorf("%s: token %d is %q type %d", text, id, v.Tokens[id], v.Types[id])
				}
			}
		})
	}
}

// bpeEncode is a reference byte-level BPE encoder: split like GPT-2, then
// repeatedly merge the adjacent pair of lowest rank.
func bpeEncode(t *testing.T, v *Vocab, text string) []int {
	t.Helper()
	rank := map[string]int{}
	for i, m := range v.Merges {
		rank[m] = i
	}
	ids := map[string]int{}
	for id, tok := range v.Tokens {
		ids[tok] = id
	}
	var out []int
	for _, piece := range pretokenize(text) {
		var syms []string
		for _, r := range EncodeBytes([]byte(piece)) {
			syms = append(syms, string(r))
		}
		for {
			best, bestRank := -1, len(v.Merges)
			for i := 0; i+1 < len(syms); i++ {
				if r, ok := rank[syms[i]+" "+syms[i+1]]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			syms = append(syms[:best], append([]string{syms[best] + syms[best+1]}, syms[best+2:]...)...)
		}
		for _, s := range syms {
			id, ok := ids[s]
			if !ok {
				t.Fatalf("symbol %q is not a token", s)
			}
			out = append(out, id)
		}
	}
	return out
}

func TestBPERoundTrip(t *testing.T) {
	v, err := NewVocab(Tiny().VocabSize, Tiny().Merges)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		"Hello world, this is a test.",
		"The keeper's notebook: 112 steps!\n\nÜnïcödé ✓ and\ttabs  ",
		"",
	} {
		ids := bpeEncode(t, v, text)
		var got []byte
		for _, id := range ids {
			b, err := DecodeToken(v.Tokens[id])
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b...)
		}
		if string(got) != text {
			t.Errorf("round trip of %q = %q", text, got)
		}
		if text == "Hello world, this is a test." && len(ids) > 3*len(text)/4 {
			t.Errorf("%q: %d tokens for %d bytes; merges barely apply", text, len(ids), len(text))
		}
		t.Logf("%q: %d tokens for %d bytes", text, len(ids), len(text))
	}
}

func TestPretokenize(t *testing.T) {
	got := pretokenize("Hello world, it's  42!\n\nOK")
	want := []string{"Hello", " world", ",", " it", "'s", " ", " 42", "!", "\n", "\n", "OK"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pretokenize = %q, want %q", got, want)
	}
	if strings.Join(pretokenize(corpus), "") != corpus {
		t.Error("pretokenize loses text")
	}
}
