package textstream

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// result is what a caller streams for a sequence of pieces.
type result struct {
	emits   []string // Push results, one per piece
	flush   string   // Flush result (only when no stop matched)
	stopped bool
	matched string
}

func (r result) text() string { return strings.Join(r.emits, "") + r.flush }

func run(stops []string, pieces ...string) result {
	s := New(stops)
	var r result
	for _, p := range pieces {
		text, stopped, matched := s.Push([]byte(p))
		r.emits = append(r.emits, text)
		if stopped {
			r.stopped, r.matched = true, matched
			break
		}
	}
	if !r.stopped {
		r.flush = s.Flush()
	}
	return r
}

func TestStreamer(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		pieces  []string
		emits   []string
		flush   string
		matched string // "" = no stop
	}{
		{name: "no stops", pieces: []string{"Hello", ",", " world"},
			emits: []string{"Hello", ",", " world"}},
		{name: "stop spanning three pieces", stops: []string{"</end>"},
			pieces: []string{"Hi </", "en", "d>", "never"},
			emits:  []string{"Hi ", "", ""}, matched: "</end>"},
		{name: "stop at very start", stops: []string{"STOP"},
			pieces: []string{"STOP", "more"}, emits: []string{""}, matched: "STOP"},
		{name: "stop inside a piece", stops: []string{"\n\n"},
			pieces: []string{"one\n\ntwo"}, emits: []string{"one"}, matched: "\n\n"},
		{name: "text before stop in same piece across held prefix", stops: []string{"abc"},
			pieces: []string{"xa", "bab", "c"}, emits: []string{"x", "ab", ""}, matched: "abc"},
		{name: "held prefix released", stops: []string{"</s>"},
			pieces: []string{"a <", "/", "b", "c"}, emits: []string{"a ", "", "</b", "c"}},
		{name: "held prefix released at flush", stops: []string{"</s>"},
			pieces: []string{"a </"}, emits: []string{"a "}, flush: "</"},
		{name: "held prefix partly released", stops: []string{"aab"},
			pieces: []string{"aa", "a", "b"}, emits: []string{"", "a", ""}, matched: "aab"},
		{name: "earliest stop wins", stops: []string{"world", "o"},
			pieces: []string{"hello world"}, emits: []string{"hell"}, matched: "o"},
		{name: "shorter stop matches later", stops: []string{"d", "llo"},
			pieces: []string{"he", "llo wor", "ld"}, emits: []string{"he", ""}, matched: "llo"},
		{name: "nested stop across pieces", stops: []string{"lo", "hello w"},
			pieces: []string{"hel", "l", "o world"}, emits: []string{"", "", "hel"}, matched: "lo"},
		{name: "shorter stop matches later, longer completes first", stops: []string{"d", "or"},
			pieces: []string{"w", "o", "rld"}, emits: []string{"w", "", ""}, matched: "or"},
		{name: "longest of stops ending together", stops: []string{"b", "ab", "xab"},
			pieces: []string{"zxa", "b"}, emits: []string{"z", ""}, matched: "xab"},
		{name: "nested stop matches where it completes", stops: []string{"abcd", "bc"},
			pieces: []string{"abcd"}, emits: []string{"a"}, matched: "bc"},
		{name: "stop across held prefix of another stop", stops: []string{"abx", "bc"},
			pieces: []string{"ab", "c"}, emits: []string{"", "a"}, matched: "bc"},
		{name: "multibyte stop split inside a character", stops: []string{"世界"},
			pieces: []string{"你好\xe4\xb8", "\x96\xe7", "\x95\x8c!"}, emits: []string{"你好", "", ""}, matched: "世界"},
		{name: "multibyte stop prefix released", stops: []string{"世界"},
			pieces: []string{"世", "人"}, emits: []string{"", "世人"}},
		{name: "empty pieces", stops: []string{"x"}, pieces: []string{"", "a", "", "x"},
			emits: []string{"", "a", "", ""}, matched: "x"},
		{name: "empty stops ignored", stops: []string{"", "z"}, pieces: []string{"ab"}, emits: []string{"ab"}},
		{name: "invalid byte", pieces: []string{"a\xffb"}, emits: []string{"a\uFFFDb"}},
		{name: "invalid run gives one replacement", pieces: []string{"a\xff\xfe", "\x80b"},
			emits: []string{"a\uFFFD", "b"}},
		{name: "broken character", pieces: []string{"\xe4\xb8", "a"}, emits: []string{"", "\uFFFDa"}},
		{name: "overlong and surrogate encodings", pieces: []string{"\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80"},
			emits: []string{"\uFFFD|\uFFFD|\uFFFD"}},
		{name: "genuine U+FFFD kept", pieces: []string{"\uFFFD\xff"}, emits: []string{"\uFFFD\uFFFD"}},
		{name: "incomplete tail dropped at flush", pieces: []string{"ok\xf0\x9f\x8e"},
			emits: []string{"ok"}, flush: ""},
		{name: "replacement character stop", stops: []string{"\uFFFD"},
			pieces: []string{"a\xe4", "b"}, emits: []string{"a", ""}, matched: "\uFFFD"},
		{name: "invalid stop matched as decoded", stops: []string{"x\xff"},
			pieces: []string{"ax\xfe"}, emits: []string{"a"}, matched: "x\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(tt.stops, tt.pieces...)
			if !slices.Equal(got.emits, tt.emits) {
				t.Errorf("emits = %q, want %q", got.emits, tt.emits)
			}
			if got.flush != tt.flush {
				t.Errorf("flush = %q, want %q", got.flush, tt.flush)
			}
			if got.stopped != (tt.matched != "") || got.matched != tt.matched {
				t.Errorf("stopped=%v matched=%q, want matched %q", got.stopped, got.matched, tt.matched)
			}
		})
	}
}

// Every 2-, 3- and 4-byte character split at every position (and byte by
// byte), alone and around a stop made of the same character.
func TestSplitCharacters(t *testing.T) {
	for _, ch := range []string{"é", "ß", "€", "世", "\uFFFD", "🎉", "𝄞"} {
		text := "a" + ch + "b" + ch + ch
		for cut := 1; cut < len(text); cut++ {
			t.Run(fmt.Sprintf("%q/cut%d", ch, cut), func(t *testing.T) {
				pieces := []string{text[:cut], text[cut:]}
				got := run(nil, pieces...)
				for _, e := range got.emits {
					if !utf8.ValidString(e) {
						t.Fatalf("emitted invalid UTF-8 %q", e)
					}
				}
				if got.text() != text {
					t.Fatalf("text = %q, want %q", got.text(), text)
				}
				got = run([]string{ch + ch}, pieces...)
				if !got.stopped || got.text() != "a"+ch+"b" {
					t.Fatalf("with stop %q: %+v", ch+ch, got)
				}
			})
		}
		bytewise := strings.Split(text, "")
		if got := run(nil, bytewise...); got.text() != text {
			t.Errorf("%q byte by byte: %q", ch, got.text())
		}
	}
}

func TestAfterStopAndFlush(t *testing.T) {
	s := New([]string{"x"})
	if text, stopped, _ := s.Push([]byte("ax")); text != "a" || !stopped {
		t.Fatalf("Push = %q, %v", text, stopped)
	}
	if text, stopped, matched := s.Push([]byte("b")); text != "" || !stopped || matched != "x" {
		t.Errorf("Push after stop = %q, %v, %q", text, stopped, matched)
	}
	if got := s.Flush(); got != "" {
		t.Errorf("Flush after stop = %q", got)
	}

	s = New([]string{"xy"})
	s.Push([]byte("ax"))
	if got := s.Flush(); got != "x" {
		t.Errorf("Flush = %q", got)
	}
	if text, stopped, _ := s.Push([]byte("y")); text != "" || stopped {
		t.Errorf("Push after Flush = %q, %v", text, stopped)
	}
	if got := s.Flush(); got != "" {
		t.Errorf("second Flush = %q", got)
	}
}

func TestPushAllocs(t *testing.T) {
	s := New([]string{"</s>", "\n\nUser:"})
	piece := []byte(" tok")
	s.Push(piece)
	// One allocation: the returned string.
	if n := testing.AllocsPerRun(1000, func() { s.Push(piece) }); n > 1 {
		t.Errorf("Push allocates %v times, want <= 1", n)
	}
}
