package api

import "fmt"

// MaxIDLength bounds every id: worker ids, pool names, model ids, job ids.
const MaxIDLength = 128

// IDRule says in words what CheckID accepts.
const IDRule = "1 to 128 of A-Z a-z 0-9 . _ - (not starting with -, not . or ..)"

// CheckID checks an id of a worker, pool, model or job: 1 to 128 bytes of
// [A-Za-z0-9._-], not "." or "..", not starting with "-". Such an id is one
// path element and one shell word that no command takes for a flag, so it
// is safe in URLs, file names, logs and remote commands (`llorch pool
// worker stop ID` over SSH).
// It returns "" when s is valid, else what is wrong.
func CheckID(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > MaxIDLength:
		return fmt.Sprintf("is longer than %d bytes", MaxIDLength)
	case s == "." || s == "..":
		return fmt.Sprintf("%q is not an id", s)
	case s[0] == '-':
		return "starts with -, which commands would take for a flag"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("contains %q at byte %d; an id is %s", rune(c), i, IDRule)
		}
	}
	return ""
}
