package grammar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// A jsonKind is the JSON type of a parsed value.
type jsonKind uint8

const (
	kNull jsonKind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

// A value is a parsed JSON value that keeps the order of object members (a
// schema's properties come out in the order its text declares them).
type value struct {
	kind jsonKind
	b    bool
	num  json.Number // kNumber: the text as written
	str  string
	arr  []*value
	keys []string       // kObject, in text order
	vals []*value       // kObject, parallel to keys
	idx  map[string]int // kObject with more than a few members: key -> index
}

// get returns the member named key of an object, or nil.
func (v *value) get(key string) *value {
	if v == nil || v.kind != kObject {
		return nil
	}
	if v.idx != nil {
		if i, ok := v.idx[key]; ok {
			return v.vals[i]
		}
		return nil
	}
	for i, k := range v.keys {
		if k == key {
			return v.vals[i]
		}
	}
	return nil
}

// indexAbove is the number of members above which an object is indexed.
const indexAbove = 8

// maxJSONDepth bounds nesting while decoding a schema.
const maxJSONDepth = 200

// parseJSON decodes one JSON document, keeping member order. Duplicate keys
// in an object are an error: which one a validator sees is not defined.
func parseJSON(data []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (*value, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &value{kind: kNull}, nil
	case bool:
		return &value{kind: kBool, b: t}, nil
	case json.Number:
		return &value{kind: kNumber, num: t}, nil
	case string:
		return &value{kind: kString, str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &value{kind: kArray}
			for dec.More() {
				e, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.arr = append(v.arr, e)
			}
			_, err := dec.Token()
			return v, err
		case '{':
			v := &value{kind: kObject}
			seen := map[string]int{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				if _, dup := seen[k]; dup {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				seen[k] = len(v.keys)
				e, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, k)
				v.vals = append(v.vals, e)
			}
			if len(v.keys) > indexAbove {
				v.idx = seen
			}
			_, err := dec.Token()
			return v, err
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// compact writes v as compact JSON, members in their original order.
func (v *value) compact(sb *strings.Builder) {
	switch v.kind {
	case kNull:
		sb.WriteString("null")
	case kBool:
		sb.WriteString(strconv.FormatBool(v.b))
	case kNumber:
		sb.WriteString(v.num.String())
	case kString:
		sb.WriteString(jsonString(v.str))
	case kArray:
		sb.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				sb.WriteByte(',')
			}
			e.compact(sb)
		}
		sb.WriteByte(']')
	case kObject:
		sb.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(jsonString(k))
			sb.WriteByte(':')
			v.vals[i].compact(sb)
		}
		sb.WriteByte('}')
	}
}

func (v *value) String() string {
	var sb strings.Builder
	v.compact(&sb)
	return sb.String()
}

// canonical is a text equal for JSON values that JSON Schema's equality calls
// equal (numbers by value, object members in any order).
func (v *value) canonical() string {
	switch v.kind {
	case kNumber:
		d := parseDecimal(v.num.String())
		if d.digits == "" {
			return "0"
		}
		sign := ""
		if d.neg {
			sign = "-"
		}
		return sign + d.digits + "e" + strconv.Itoa(d.exp)
	case kArray:
		parts := make([]string, len(v.arr))
		for i, e := range v.arr {
			parts[i] = e.canonical()
		}
		return "[" + strings.Join(parts, ",") + "]"
	case kObject:
		idx := make([]int, len(v.keys))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return v.keys[idx[a]] < v.keys[idx[b]] })
		var sb strings.Builder
		sb.WriteByte('{')
		for n, i := range idx {
			if n > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(jsonString(v.keys[i]) + ":" + v.vals[i].canonical())
		}
		sb.WriteByte('}')
		return sb.String()
	}
	return v.String()
}

// isInteger says whether a number has no fractional part (JSON Schema's
// "integer" includes 1.0).
func (v *value) isInteger() bool {
	if v.kind != kNumber {
		return false
	}
	d := parseDecimal(v.num.String())
	return d.digits == "" || d.exp >= 0
}

// A decimal is a JSON number read without arithmetic: sign × digits ×
// 10^exp, digits without leading or trailing zeros ("" for zero). Numbers
// like 1e999999 cost nothing here; big.Rat would spend tens of
// milliseconds on each.
type decimal struct {
	neg    bool
	digits string
	exp    int
}

// maxExp bounds the exponents parseDecimal keeps; larger ones saturate.
const maxExp = 1 << 30

// parseDecimal reads the text of a JSON number (json.Number, checked by
// the decoder).
func parseDecimal(s string) decimal {
	var d decimal
	s, d.neg = strings.CutPrefix(s, "-")
	mant, expText := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, expText = s[:i], s[i+1:]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	eneg := false
	if expText != "" && (expText[0] == '+' || expText[0] == '-') {
		eneg = expText[0] == '-'
		expText = expText[1:]
	}
	exp := 0
	for i := 0; i < len(expText) && exp < maxExp; i++ {
		exp = exp*10 + int(expText[i]-'0')
	}
	exp = min(exp, maxExp)
	if eneg {
		exp = -exp
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	if trimmed == "" {
		return decimal{}
	}
	d.digits, d.exp = trimmed, exp
	return d
}

// magnitude is the decimal exponent of the leading digit (0 for 1 to 9.99).
func (d decimal) magnitude() int { return d.exp + len(d.digits) - 1 }

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}
