package toolcall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// pyJSON rewrites JSON text as Jinja's tojson filter in the models' chat
// templates writes it (Python's json.dumps with ensure_ascii=False): with
// indent 0 on one line with ", " and ": " separators, else one item a line,
// indent spaces a level, "," and ": ". Key order and number spellings are
// kept.
func pyJSON(raw []byte, indent int) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var b strings.Builder
	type level struct {
		obj   bool
		count int
	}
	var stack []level
	afterKey, seen := false, false
	newline := func(depth int) {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat(" ", indent*depth))
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("toolcall: %w", err)
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top.count > 0 && indent > 0 {
				newline(len(stack))
			}
			b.WriteByte(byte(d))
			afterKey = false
			continue
		}
		// A key or a value: write the separator before it.
		isKey := false
		if len(stack) == 0 {
			if seen {
				return "", errors.New("toolcall: more than one JSON value")
			}
			seen = true
		}
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			if afterKey {
				afterKey = false
			} else {
				if top.count > 0 {
					b.WriteByte(',')
					if indent == 0 {
						b.WriteByte(' ')
					}
				}
				if indent > 0 {
					newline(n)
				}
				top.count++
				isKey = top.obj
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			b.WriteByte(byte(v))
			stack = append(stack, level{obj: v == '{'})
		case string:
			pyString(&b, v)
			if isKey {
				b.WriteString(": ")
				afterKey = true
			}
		case json.Number:
			b.WriteString(string(v))
		case bool:
			if v {
				b.WriteString("true")
			} else {
				b.WriteString("false")
			}
		case nil:
			b.WriteString("null")
		}
	}
	if len(stack) > 0 || !seen {
		return "", errors.New("toolcall: unterminated JSON")
	}
	return b.String(), nil
}

// pyString writes s as a JSON string the way Python's json.dumps does with
// ensure_ascii=False.
func pyString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// marshal is json.Marshal without HTML escaping (tojson does not escape <, >
// and &).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
