package synth

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// corpus is the English text the BPE merges are learned from.
//
//go:embed corpus.txt
var corpus string

// Token types as stored in tokenizer.ggml.token_type (llama.cpp's
// enum llama_token_type). In a GPT-2 style vocabulary the 256 byte tokens
// are NORMAL tokens; llama.cpp only decodes NORMAL tokens through the byte
// map.
const (
	TokenTypeNormal  int32 = 1
	TokenTypeControl int32 = 3
)

// Special token texts.
const (
	EndOfText = "<|endoftext|>"
	IMStart   = "<|im_start|>"
	IMEnd     = "<|im_end|>"
)

// ChatTemplate is the ChatML template stored in tokenizer.chat_template;
// llama.cpp detects it as "chatml".
const ChatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// ByteToRune returns GPT-2's byte→unicode map: printable bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') map to themselves, the others in order to U+0100 and
// up, so that space becomes 'Ġ' and newline 'Ċ'.
func ByteToRune() [256]rune {
	var m [256]rune
	next := rune(256)
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = next
			next++
		}
	}
	return m
}

// EncodeBytes maps raw bytes to token text through the byte map.
func EncodeBytes(b []byte) string {
	m := ByteToRune()
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(m[c])
	}
	return sb.String()
}

// DecodeToken maps the text of a NORMAL token back to the bytes it stands
// for. It fails if the text has a character outside the byte map, which
// llama.cpp would not be able to decode either.
func DecodeToken(text string) ([]byte, error) {
	// The map's image is U+0021..U+0143, so a small array inverts it.
	var inv [0x144]int16
	for i := range inv {
		inv[i] = -1
	}
	for b, r := range ByteToRune() {
		inv[r] = int16(b)
	}
	out := make([]byte, 0, len(text))
	for i, r := range text {
		if r == utf8.RuneError {
			return nil, fmt.Errorf("synth: token %q: invalid UTF-8 at byte %d", text, i)
		}
		if r < 0 || int(r) >= len(inv) || inv[r] < 0 {
			return nil, fmt.Errorf("synth: token %q: character %U is not in the byte map", text, r)
		}
		out = append(out, byte(inv[r]))
	}
	return out, nil
}

// Vocab is a GPT-2 style byte-level BPE vocabulary.
type Vocab struct {
	// Tokens holds the token texts by id: the 256 byte tokens (id = byte
	// value), the merge results, the control tokens, then padding tokens.
	Tokens []string
	// Types holds the token types by id (TokenTypeNormal or TokenTypeControl).
	Types []int32
	// Merges holds the BPE merges in rank order, each "left right".
	Merges []string
	// Token ids of the control tokens. EndOfText is both BOS and EOS.
	EndOfText, IMStart, IMEnd int
}

// NewVocab builds a vocabulary of exactly size tokens with up to merges BPE
// merges learned from the embedded corpus. The extra texts become control
// tokens after the three ChatML ones (a chat family's markers, see Chat).
func NewVocab(size, merges int, extra ...string) (*Vocab, error) {
	if merges < 0 || size < 256+merges+3+len(extra) {
		return nil, fmt.Errorf("synth: vocab size %d is below 256 bytes + %d merges + %d control tokens", size, merges, 3+len(extra))
	}
	v := &Vocab{}
	seen := make(map[string]bool, size)
	add := func(text string, typ int32) int {
		seen[text] = true
		v.Tokens = append(v.Tokens, text)
		v.Types = append(v.Types, typ)
		return len(v.Tokens) - 1
	}
	m := ByteToRune()
	for b := range 256 {
		add(string(m[b]), TokenTypeNormal)
	}
	for _, pair := range trainBPE(corpus, merges) {
		v.Merges = append(v.Merges, pair[0]+" "+pair[1])
		if joined := pair[0] + pair[1]; !seen[joined] {
			add(joined, TokenTypeNormal)
		}
	}
	v.EndOfText = add(EndOfText, TokenTypeControl)
	v.IMStart = add(IMStart, TokenTypeControl)
	v.IMEnd = add(IMEnd, TokenTypeControl)
	for _, text := range extra {
		if seen[text] {
			return nil, fmt.Errorf("synth: control token %q is already in the vocabulary", text)
		}
		add(text, TokenTypeControl)
	}
	for id := len(v.Tokens); id < size; id++ {
		// "Ġpad123" detokenizes to " pad123": readable, and made only of
		// characters in the byte map. BPE never merges letters with digits,
		// so these never collide with merge results.
		text := "Ġpad" + strconv.Itoa(id)
		if seen[text] {
			return nil, fmt.Errorf("synth: padding token %q collides with another token", text)
		}
		add(text, TokenTypeNormal)
	}
	return v, nil
}

// ID is the id of the token with the given text, or -1.
func (v *Vocab) ID(text string) int {
	for id, t := range v.Tokens {
		if t == text {
			return id
		}
	}
	return -1
}

// trainBPE learns up to n merges from text with byte-level BPE: the text is
// pre-split like GPT-2 does, each piece becomes a sequence of byte-map
// characters, and the most frequent adjacent pair is merged repeatedly. Ties
// go to the lexicographically smallest pair, so the result is deterministic.
func trainBPE(text string, n int) [][2]string {
	// Symbols are interned so that pairs are cheap map keys.
	var syms []string
	ids := map[string]uint32{}
	intern := func(s string) uint32 {
		if id, ok := ids[s]; ok {
			return id
		}
		ids[s] = uint32(len(syms))
		syms = append(syms, s)
		return ids[s]
	}

	type word struct {
		syms []uint32
		freq int
	}
	freq := map[string]int{}
	var order []string // first-occurrence order, for determinism
	for _, piece := range pretokenize(text) {
		if freq[piece] == 0 {
			order = append(order, piece)
		}
		freq[piece]++
	}
	m := ByteToRune()
	words := make([]word, 0, len(order))
	for _, piece := range order {
		w := word{freq: freq[piece]}
		for i := 0; i < len(piece); i++ {
			w.syms = append(w.syms, intern(string(m[piece[i]])))
		}
		words = append(words, w)
	}

	var merges [][2]string
	counts := map[uint64]int{}
	for len(merges) < n {
		clear(counts)
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				counts[uint64(w.syms[i])<<32|uint64(w.syms[i+1])] += w.freq
			}
		}
		var best uint64
		bestCount := 0
		for pair, c := range counts {
			if c > bestCount || (c == bestCount && pairLess(syms, pair, best)) {
				best, bestCount = pair, c
			}
		}
		if bestCount == 0 {
			break
		}
		a, b := uint32(best>>32), uint32(best)
		merges = append(merges, [2]string{syms[a], syms[b]})
		ab := intern(syms[a] + syms[b])
		for wi := range words {
			s := words[wi].syms
			out := s[:0]
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == a && s[i+1] == b {
					out = append(out, ab)
					i++
				} else {
					out = append(out, s[i])
				}
			}
			words[wi].syms = out
		}
	}
	return merges
}

// pairLess orders two interned pairs by their texts.
func pairLess(syms []string, p, q uint64) bool {
	pa, pb := syms[p>>32], syms[uint32(p)]
	qa, qb := syms[q>>32], syms[uint32(q)]
	if pa != qa {
		return pa < qa
	}
	return pb < qb
}

// pretokenize splits text roughly like GPT-2's pre-tokenizer
// ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+):
// contractions, letter runs, digit runs and punctuation runs, each with an
// optional leading space, and whitespace runs.
func pretokenize(text string) []string {
	var out []string
	class := func(r rune) int {
		switch {
		case unicode.IsLetter(r):
			return 1
		case unicode.IsNumber(r):
			return 2
		case unicode.IsSpace(r):
			return 3
		}
		return 4
	}
	runeAt := func(i int) (rune, int) { return utf8.DecodeRuneInString(text[i:]) }
	for i := 0; i < len(text); {
		if text[i] == '\'' {
			for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
				if strings.HasPrefix(text[i+1:], c) {
					out = append(out, text[i:i+1+len(c)])
					i += 1 + len(c)
					goto next
				}
			}
		}
		{
			start, j := i, i
			if text[i] == ' ' && i+1 < len(text) {
				if r, _ := runeAt(i + 1); class(r) != 3 {
					j = i + 1
				}
			}
			r, size := runeAt(j)
			c := class(r)
			if c == 3 {
				// Whitespace run.
				k := j
				for k < len(text) {
					r, size := runeAt(k)
					if class(r) != 3 {
						break
					}
					k += size
				}
				if k < len(text) && k-j > 1 {
					// \s+(?!\S): the last whitespace character goes with
					// what follows (as the optional leading space) or stands
					// alone.
					_, size := utf8.DecodeLastRuneInString(text[j:k])
					k -= size
				}
				out = append(out, text[j:k])
				i = k
				continue
			}
			k := j + size
			for k < len(text) {
				r, size := runeAt(k)
				if class(r) != c {
					break
				}
				k += size
			}
			out = append(out, text[start:k])
			i = k
		}
	next:
	}
	return out
}
