package routing

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/stdlib"
)

// TestGuardsKeepSemantics runs scripts through plain tengo and through
// Compile's rewrite: for values within the limits, every guarded operation
// gives what tengo gives, and fails with the same message.
func TestGuardsKeepSemantics(t *testing.T) {
	for _, src := range []string{
		// + and +=
		`r := 1 + 2`,
		`r := 1.5 + 2`,
		`r := 'a' + 1`,
		`r := "a" + 1`,
		`r := "a" + 2.5`,
		`r := "a" + [1, "b", [true]]`,
		`r := "a" + {x: [1]}`,
		`r := "e: " + error("x")`,
		`r := "u" + undefined`,
		`r := [1] + [2, 3]`,
		`r := [1] + []`,
		`r := immutable([1]) + immutable([2])`,
		`r := bytes("ab") + bytes("c")`,
		`a := [1]; a += [2]; r := a`,
		`s := "x"; s += "y"; s += 1; r := s`,
		`s := "x"; s++; r := s`,
		`i := 1; i++; i += 2; i -= 1; r := i`,
		`m := {a: [1]}; m.a += [2]; m["b"] = 1; m["b"] += 2; r := [m.a, m.b]`,
		`r := 1 + "a"`,
		`r := [1] + 1`,
		`r := {} + {}`,
		// == and !=
		`r := [1, [2, "x"]] == [1, [2, "x"]]`,
		`r := {a: [1], b: {c: 2}} != {a: [1], b: {c: 3}}`,
		`r := [1] == immutable([1])`,
		`r := {a: 1} == immutable({a: 1})`,
		`a := "x"; b := "x"; r := [a == b, a != b, 1 == 1.0, 'a' == 97]`,
		`e := error(1); r := [e == e, e == error(1)]`,
		`r := [undefined == undefined, [] == {}, [] != []]`,
		// indexes and slices
		`r := "héllo"[1]`,
		`r := ["héllo"[-1], "abc"[3], "abc"[0]]`,
		`r := [1, 2, 3][1]`,
		`r := {a: 1}["a"]`,
		`m := {}; m[1] = 2; r := m["1"]`,
		`k := "a"; m := {a: {b: 2}}; r := m[k]["b"]`,
		`r := error("x")["value"]`,
		`r := [1, 2, 3][1:]`,
		`r := [1, 2, 3][:-5]`,
		`r := immutable([1, 2, 3])[1:2]`,
		`r := "héllo"[1:3]`,
		`r := string(bytes("abc")[1:])`,
		`r := "abc"[2:10]`,
		`r := [1]["a"]`,
		`r := 1[0]`,
		`r := "abc"[1:"b"]`,
		`r := [1, 2][2:1]`,
		`r := 5[1:]`,
		// loops, literals, functions
		`r := 0; for k, v in {a: 1, b: 2} { r += v }`,
		`r := ""; for i, c in "héllo" { r += string(c) + i }`,
		`r := []; for v in [1, 2] { r = append(r, v) }`,
		`f := func(a, ...b) { return [a, b, len(b)] }; r := [f(1), f(1, 2, 3), f([4, 5]...)]`,
		`r := [{a: 1}, [2, {b: [3]}]]`,
		// builtins
		`r := string([1, "a"])`,
		`r := format("%s-%v-%d", "a", [1], 3)`,
		`r := copy([1, [2]])`,
		`a := [1, 2, 3]; b := splice(a, 1, 1, 9, 8); r := [a, b]`,
		`r := append([1], 2, 3)`,
		`r := range(0, 5, 2)`,
		`r := bytes(3)`,
		// modules
		`text := import("text"); r := text.re_replace("(a)(b)", "xabyab", "$2$1")`,
		`text := import("text"); r := text.re_find("a(b)", "ab xab", -1)[1][1].begin`,
		`text := import("text"); r := len(text.re_find("a", "aaa"))`,
		`text := import("text"); r := text.re_match("^w[0-9]$", "w1")`,
		`text := import("text"); r := text.re_match("(", "x")`,
		`text := import("text"); r := text.re_find("[", "x")`,
		`text := import("text"); r := text.re_compile("a{2000}")`,
		`text := import("text"); r := text.re_split("[,;]", "a,b;c", -1)`,
		`text := import("text"); re := text.re_compile("a+"); r := [re.match("baa"), re.replace("baab", "c"), re.split("baab"), re.find("baab")[0][0].end]`,
		`text := import("text"); r := [text.split("a,b", ","), text.join(["a", 1, [2]], "-"), text.replace("aaa", "a", "bb", 2), text.repeat("ab", 3)]`,
		`text := import("text"); r := [text.pad_left("x", 3, "-"), text.trim("xxaxx", "x"), text.fields(" a b "), text.format_float(1.5, "f", 2, 64)]`,
		`text := import("text"); r := text.contains([1], "1")`,
		`text := import("text"); r := len(text.join(text.split(text.repeat("a", 60000), ""), ""))`,
		`json := import("json"); r := string(json.encode([1, "a", {b: true}]))`,
		`json := import("json"); r := json.decode("[1, {\"a\": [2]}]")`,
		`json := import("json"); r := string(json.indent("[1,2]", ">", "  "))`,
		`fmt := import("fmt"); r := fmt.sprintf("%v %d %s", [1], 2, "x")`,
		`times := import("times"); r := times.duration_string(times.second * 90)`,
		`enum := import("enum"); r := enum.map([1, 2], func(k, v) { return v * 2 })`,
		`math := import("math"); r := math.abs(-2)`,
	} {
		want, wantErr := plainTengo(t, src)
		got, gotErr := guardedTengo(t, src)
		if got != want || gotErr != wantErr {
			t.Errorf("%s\n got %q, error %q\nwant %q, error %q", src, got, gotErr, want, wantErr)
		}
	}
}

// position matches the position tengo appends to a runtime error.
var position = regexp.MustCompile(`\s+at \S+:\d+:\d+`)

// plainTengo runs src with tengo's own modules and gives string(r), or the
// runtime error's message.
func plainTengo(t *testing.T, src string) (string, string) {
	t.Helper()
	s := tengo.NewScript([]byte(src + "\nout := string(r)"))
	s.SetImports(stdlib.GetModuleMap("text", "json", "fmt", "times", "math", "enum"))
	c, err := s.Run()
	if err != nil {
		if !strings.HasPrefix(err.Error(), "Runtime Error: ") {
			t.Fatalf("%s: %v", src, err)
		}
		msg := strings.TrimPrefix(err.Error(), "Runtime Error: ")
		return "", position.ReplaceAllString(msg, "")
	}
	return c.Get("out").String(), ""
}

// guardedTengo runs src through Compile and gives string(r) (through a
// reject message), or the runtime error's message.
func guardedTengo(t *testing.T, src string) (string, string) {
	t.Helper()
	s := compile(t, src+"\ndecision = {action: \"reject\", code: \"R\", message: string(r)}", Config{Timeout: 5 * time.Second})
	d, r := s.Admit(t.Context(), newAdmit())
	if r.Err != nil {
		msg := strings.TrimPrefix(r.Err.Error(), ErrRuntime.Error()+": ")
		return "", position.ReplaceAllString(msg, "")
	}
	return d.Message, ""
}
