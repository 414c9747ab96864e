package remote

import "strings"

// Quote returns s quoted for a POSIX shell, so that the shell reads it back as
// exactly one word equal to s. Words made only of characters that no shell
// treats specially are returned unchanged; everything else is wrapped in
// single quotes, each single quote inside written as quote, backslash, quote,
// quote. The empty string becomes a pair of single quotes:
//
//	Quote("ls")    == "ls"
//	Quote("it's")  == `'it'\''s'`
//	Quote("")      == `''`
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isSafeWord(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// isSafeWord reports whether s needs no quoting. '=' is left out so that an
// argv[0] like "A=b" stays a command name and never becomes an assignment,
// and '~' is left out because of tilde expansion.
func isSafeWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("_@%+:,./-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// quoteArgv joins argv into one shell command line, quoting every element.
func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}
