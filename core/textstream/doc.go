// Package textstream turns the byte pieces of sampled tokens into text that is
// safe to stream: valid UTF-8 that never contains (or starts to leak) a stop
// sequence.
//
// A worker feeds each token's piece to a Streamer and sends whatever Push
// returns; at the end of generation (EOS, max tokens) it sends Flush's result.
// A Streamer holds back two kinds of text:
//
//   - the bytes of an incomplete UTF-8 character at the tail, until the
//     character completes (byte-level BPE emits single bytes);
//   - the longest tail of the text that is a prefix of some stop string, until
//     it either completes the stop (the stop and everything after it are
//     dropped) or turns out not to be one (then it is released).
//
// # Invalid UTF-8
//
// Bytes that can never form valid UTF-8 are replaced by U+FFFD as soon as they
// are known to be invalid, with one U+FFFD per run of consecutive invalid
// bytes — exactly what strings.ToValidUTF8(text, "\uFFFD") gives for the
// whole output, however the bytes were split into pieces. An incomplete
// character still pending when Flush is called is dropped (generation was cut
// off in the middle of it), so the streamed text is
// strings.ToValidUTF8(input without that incomplete tail, "\uFFFD").
//
// # Stop sequences
//
// Stop strings are matched against that decoded text (a stop that is itself
// invalid UTF-8 is decoded the same way first; empty stops are ignored). The
// Streamer stops at the first point where the text ends with a stop string;
// when several stops end there, the longest wins. Because matching happens as
// each byte of text is decoded, the result does not depend on how the text was
// split into pieces: a stop nested inside a longer one (stops "abcd" and "bc")
// matches where it completes ("bc", emitting "a"), just as it would if the
// tokens had ended right after "c".
//
// Each stop has a Knuth–Morris–Pratt automaton that advances once per decoded
// byte, so Push costs O(len(piece) × len(stops)) amortised and never rescans
// emitted text; the text held back is shorter than the longest stop.
package textstream
