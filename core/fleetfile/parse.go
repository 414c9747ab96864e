// Package fleetfile reads the declarative fleet file (`llorch orchestrate
// --fleet`, `llorch ctl fleet apply|diff -f`) and plans what it takes to make
// an orchestrator match it.
//
// The file is YAML whose schema is the JSON of api.FleetFile: YAML goes
// through sigs.k8s.io/yaml to JSON and then the api types' json tags. This is
// the only package that imports a YAML library. Decoding is strict: an
// unknown field, a field spelt with other capitals, or a key given twice is
// an error naming the entry (or the line), and every entry is validated with
// the api types' own Validate, which also fills the defaults.
//
//	pools:
//	  - name: gpu-a
//	    host: gpu-a.lan          # ssh; an ~/.ssh/config alias works
//	    labels: {gpu: "true"}
//	  - name: here
//	    transport: local
//	models:
//	  - id: qwen
//	    source: hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
//	    min_replicas: 1
//	    slots: 8
//	  - id: embed
//	    source: hf:nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q8_0.gguf
//	    embedding: true          # embedding workers: POST /v1/embeddings only
//
// Plan compares a parsed file with what the orchestrator holds (both with
// defaults filled) and returns the changes; FormatPlan prints them; Apply
// carries them out through a small writer interface (orchclient.Client).
package fleetfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/llorch/llorch/core/api"
)

// MaxBytes bounds a fleet file.
const MaxBytes = 1 << 20

// Errors of Parse.
var (
	ErrTooLarge = fmt.Errorf("fleetfile: larger than %d bytes", MaxBytes)
	ErrEmpty    = errors.New("fleetfile: empty (declare pools: and models:, even as [] lists)")
)

// Load reads a fleet file from r (at most MaxBytes) and parses it; name (a
// path, or "stdin") prefixes its errors.
func Load(name string, r io.Reader) (api.FleetFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return api.FleetFile{}, fmt.Errorf("fleet file %s: %w", name, err)
	}
	f, err := Parse(data)
	if err != nil {
		return api.FleetFile{}, fmt.Errorf("fleet file %s: %w", name, err)
	}
	return f, nil
}

// Parse decodes a fleet file strictly and validates it (defaults filled).
func Parse(data []byte) (api.FleetFile, error) {
	var f api.FleetFile
	if len(data) > MaxBytes {
		return f, ErrTooLarge
	}
	// Syntax and duplicate keys first: their errors carry the line.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return f, fmt.Errorf("fleetfile: %s", oneLine(err.Error()))
	}
	if err := checkShape(js); err != nil {
		return f, err
	}
	// The typed decode converts YAML scalars to what each field wants (a
	// label `gpu: true` is the string "true").
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return api.FleetFile{}, locate(js, err)
	}
	if err := f.Validate(); err != nil {
		return api.FleetFile{}, fmt.Errorf("fleetfile: %w", err)
	}
	return f, nil
}

// Field names as the json tags spell them, in declaration order.
var (
	poolFields  = jsonFields(reflect.TypeFor[api.Pool]())
	modelFields = jsonFields(reflect.TypeFor[api.ModelSpec]())
)

func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// checkShape checks the document's structure with exact field names (the
// json decoder would match "Slots" to slots): a mapping of pools and models,
// each a list of mappings with known fields.
func checkShape(js []byte) error {
	var top any
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	if err := d.Decode(&top); err != nil {
		return fmt.Errorf("fleetfile: %w", err)
	}
	if top == nil {
		return ErrEmpty
	}
	m, ok := top.(map[string]any)
	if !ok {
		return fmt.Errorf("fleetfile: the top level must be a mapping with pools: and models:, not %s", kindOf(top))
	}
	for _, k := range sortedKeys(m) {
		if k != "pools" && k != "models" {
			return fmt.Errorf("fleetfile: unknown top-level field %q (want pools and models)", k)
		}
	}
	for _, sec := range []struct {
		name, key string
		fields    []string
	}{{"pools", "name", poolFields}, {"models", "id", modelFields}} {
		v, ok := m[sec.name]
		if !ok || v == nil {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			return fmt.Errorf("fleetfile: %s must be a list, not %s", sec.name, kindOf(v))
		}
		for i, e := range list {
			em, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("fleetfile: %s: must be a mapping, not %s", entry(sec.name, i, nil, ""), kindOf(e))
			}
			for _, k := range sortedKeys(em) {
				if !contains(sec.fields, k) {
					hint := ""
					if s := suggest(k, sec.fields); s != "" {
						hint = fmt.Sprintf(" (did you mean %s?)", s)
					}
					return fmt.Errorf("fleetfile: %s: unknown field %q%s; known: %s", entry(sec.name, i, em, sec.key), k, hint, strings.Join(sec.fields, ", "))
				}
			}
		}
	}
	return nil
}

// locate finds the entry a typed decode failed on (by decoding each entry
// alone) and names it; it falls back to the whole file's error.
func locate(js []byte, whole error) error {
	var top struct {
		Pools  []json.RawMessage `json:"pools"`
		Models []json.RawMessage `json:"models"`
	}
	if json.Unmarshal(js, &top) == nil {
		for i, raw := range top.Pools {
			var p api.Pool
			if err := yaml.UnmarshalStrict(raw, &p); err != nil {
				return fmt.Errorf("fleetfile: %s: %s", entryRaw("pools", i, raw, "name"), decodeMsg(err))
			}
		}
		for i, raw := range top.Models {
			var m api.ModelSpec
			if err := yaml.UnmarshalStrict(raw, &m); err != nil {
				return fmt.Errorf("fleetfile: %s: %s", entryRaw("models", i, raw, "id"), decodeMsg(err))
			}
		}
	}
	return fmt.Errorf("fleetfile: %s", decodeMsg(whole))
}

// decodeMsg strips the converter's layers ("error unmarshaling JSON: while
// decoding JSON: json: ") from a decode error.
func decodeMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s: want %s, not %s", te.Field, te.Type, te.Value)
	}
	s := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.TrimPrefix(s, p)
	}
	return oneLine(s)
}

func entryRaw(section string, i int, raw json.RawMessage, key string) string {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return entry(section, i, m, key)
}

// entry names a list entry as FleetFile.Validate does: models[2] "qwen".
func entry(section string, i int, m map[string]any, key string) string {
	if s, ok := m[key].(string); ok && s != "" && len(s) <= api.MaxIDLength {
		return fmt.Sprintf("%s[%d] %q", section, i, s)
	}
	return fmt.Sprintf("%s[%d]", section, i)
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// suggest is the known field closest to an unknown one (same letters in
// other capitals, or at most two edits away), or "".
func suggest(k string, known []string) string {
	best, bestD := "", 3
	for _, f := range known {
		if strings.EqualFold(f, k) || strings.EqualFold(strings.ReplaceAll(f, "_", ""), strings.ReplaceAll(strings.ReplaceAll(k, "-", ""), "_", "")) {
			return f
		}
		if d := editDistance(strings.ToLower(k), f); d < bestD {
			best, bestD = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
