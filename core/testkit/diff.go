package testkit

import (
	"fmt"
	"strings"
)

// LineDiff shows the lines between the common head and tail of got and want,
// those of got prefixed "-" and those of want "+", each quoted so that
// whitespace shows; "" when they are equal. Golden-file tests print it as
// "-got +want".
func LineDiff(got, want string) string {
	if got == want {
		return ""
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	head := 0
	for head < len(g) && head < len(w) && g[head] == w[head] {
		head++
	}
	tail := 0
	for tail < len(g)-head && tail < len(w)-head && g[len(g)-1-tail] == w[len(w)-1-tail] {
		tail++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "@@ line %d @@\n", head+1)
	for _, l := range g[head : len(g)-tail] {
		fmt.Fprintf(&b, "-%q\n", l)
	}
	for _, l := range w[head : len(w)-tail] {
		fmt.Fprintf(&b, "+%q\n", l)
	}
	return b.String()
}
