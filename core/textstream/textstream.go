package textstream

import (
	"strings"
	"unicode/utf8"
)

const replacement = "\uFFFD"

// Streamer is fed token pieces and returns the text that is safe to emit now.
// It is not safe for concurrent use. The zero value is not usable; call New.
type Streamer struct {
	stops []matcher

	pending  []byte // incomplete UTF-8 character at the tail (< utf8.UTFMax bytes)
	invalid  bool   // the last decoded byte was invalid (a U+FFFD run is open)
	held     []byte // decoded text not yet emitted: a prefix of some stop
	scratch  []byte // pending + piece, reused
	stopped  bool
	finished bool // Flush was called
	matched  string
}

// matcher finds one stop string in the decoded text, byte by byte.
type matcher struct {
	orig  string // as given to New, reported as matched
	pat   string // orig with invalid UTF-8 replaced, as the text is
	fail  []int  // KMP failure function: fail[i] = longest proper border of pat[:i+1]
	state int    // length of the longest suffix of the text that is a prefix of pat
}

// New returns a Streamer that stops at any of stops. Empty stop strings are
// ignored; stops are not limited in number or length here (the API validates
// them), but each one costs a little per byte of text.
func New(stops []string) *Streamer {
	s := &Streamer{}
	for _, stop := range stops {
		if stop == "" {
			continue
		}
		pat := strings.ToValidUTF8(stop, replacement)
		s.stops = append(s.stops, matcher{orig: stop, pat: pat, fail: failure(pat)})
	}
	return s
}

func failure(pat string) []int {
	fail := make([]int, len(pat))
	k := 0
	for i := 1; i < len(pat); i++ {
		for k > 0 && pat[i] != pat[k] {
			k = fail[k-1]
		}
		if pat[i] == pat[k] {
			k++
		}
		fail[i] = k
	}
	return fail
}

// step advances the automaton by one byte of text and reports whether the
// text now ends with the whole pattern.
func (m *matcher) step(c byte) bool {
	k := m.state
	for k > 0 && m.pat[k] != c {
		k = m.fail[k-1]
	}
	if m.pat[k] == c {
		k++
	}
	m.state = k
	return k == len(m.pat)
}

// Push appends one token's piece. It returns the text that became safe to emit
// (possibly ""), and whether a stop sequence matched: then text is everything
// before the match that was not emitted yet, matched is the stop string as
// given to New, and the Streamer is done (later calls return "", true,
// matched). After Flush, Push returns "", false, "".
func (s *Streamer) Push(piece []byte) (text string, stopped bool, matched string) {
	if s.stopped {
		return "", true, s.matched
	}
	if s.finished || len(piece) == 0 {
		return "", false, ""
	}
	start := len(s.held)
	s.decode(piece)
	if len(s.stops) == 0 {
		text = string(s.held)
		s.held = s.held[:0]
		return text, false, ""
	}
	keep := 0
	for j := start; j < len(s.held); j++ {
		c := s.held[j]
		best := -1
		keep = 0
		for i := range s.stops {
			m := &s.stops[i]
			if m.step(c) && (best < 0 || len(m.pat) > len(s.stops[best].pat)) {
				best = i
			}
			keep = max(keep, m.state)
		}
		if best >= 0 {
			m := &s.stops[best]
			text = string(s.held[:j+1-len(m.pat)])
			s.stopped, s.matched = true, m.orig
			s.held, s.pending, s.scratch = nil, nil, nil
			return text, true, m.orig
		}
	}
	if start == len(s.held) { // no new text: only pending bytes grew
		return "", false, ""
	}
	n := len(s.held) - keep
	text = string(s.held[:n])
	s.held = s.held[:copy(s.held, s.held[n:])]
	return text, false, ""
}

// Flush returns the text still held back at the end of generation when no stop
// matched: a held partial stop prefix is real text and is returned. An
// incomplete UTF-8 character at the very end is dropped (see the package
// documentation). After Flush the Streamer is finished and Push returns "".
// Flush after a stop returns "".
func (s *Streamer) Flush() string {
	if s.stopped || s.finished {
		return ""
	}
	s.finished = true
	text := string(s.held)
	s.held, s.pending, s.scratch = nil, nil, nil
	return text
}

// decode appends the text decoded from pending+piece to s.held and keeps an
// incomplete final character in s.pending.
func (s *Streamer) decode(piece []byte) {
	b := piece
	if len(s.pending) > 0 {
		s.scratch = append(append(s.scratch[:0], s.pending...), piece...)
		b = s.scratch
	}
	i := 0
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			s.held = append(s.held, c)
			s.invalid = false
			i++
			continue
		}
		if !utf8.FullRune(b[i:]) {
			break // a valid character's first bytes: wait for the rest
		}
		_, size := utf8.DecodeRune(b[i:])
		if size == 1 { // invalid byte (a genuine U+FFFD decodes with size 3)
			if !s.invalid {
				s.held = append(s.held, replacement...)
				s.invalid = true
			}
			i++
			continue
		}
		s.held = append(s.held, b[i:i+size]...)
		s.invalid = false
		i += size
	}
	s.pending = append(s.pending[:0], b[i:]...)
}
