package fleetfile

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

const example = `# two hosts and this one
pools:
  - name: gpu-a
    host: gpu-a.lan
    labels: {gpu: true, zone: "1"}
    memory_limit_bytes: 8000000000
  - name: here
    transport: local
    pool_dir: /var/lib/llorch
models:
  - id: qwen
    source: hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
    min_replicas: 1
    max_replicas: 3
    idle_ttl: 5m
    slots: 8
    labels: {gpu: "true"}
  - id: tiny
    source: file:/models/tiny.gguf
    min_replicas: 0
    idle_ttl: 90
    pools: [here]
`

func TestParseExample(t *testing.T) {
	f, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Pools) != 2 || len(f.Models) != 2 {
		t.Fatalf("parsed %+v", f)
	}
	a, here := f.Pools[0], f.Pools[1]
	// YAML scalars become what the field wants: a label `gpu: true` is "true".
	if a.Transport != api.TransportSSH || a.Labels["gpu"] != "true" || a.Labels["zone"] != "1" || a.MemoryLimitBytes != 8e9 {
		t.Errorf("pool gpu-a = %+v", a)
	}
	if here.Transport != api.TransportLocal || here.PoolDir != "/var/lib/llorch" {
		t.Errorf("pool here = %+v", here)
	}
	q, tiny := f.Models[0], f.Models[1]
	if q.MinReplicas != 1 || q.MaxReplicas != 3 || time.Duration(q.IdleTTL) != 5*time.Minute || q.Slots != 8 || q.Backend != "cpu" {
		t.Errorf("model qwen = %+v", q)
	}
	// Defaults filled; a number of seconds is a duration.
	if tiny.MaxReplicas != 1 || tiny.Slots != 4 || time.Duration(tiny.IdleTTL) != 90*time.Second || tiny.Pools[0] != "here" {
		t.Errorf("model tiny = %+v", tiny)
	}
}

// embedding: true declares an embedding model; a misspelt one is named.
func TestParseEmbedding(t *testing.T) {
	f, err := Parse([]byte("pools: []\nmodels:\n  - id: emb\n    source: file:/models/emb.gguf\n    embedding: true\n  - id: gen\n    source: file:/models/gen.gguf\n"))
	if err != nil || len(f.Models) != 2 || !f.Models[0].Embedding || f.Models[1].Embedding {
		t.Fatalf("%+v %v", f, err)
	}
	_, err = Parse([]byte("models:\n  - id: emb\n    source: file:/models/emb.gguf\n    embeddings: true\n"))
	if err == nil || !strings.Contains(err.Error(), "did you mean embedding?") {
		t.Fatalf("misspelt field: %v", err)
	}
	_, err = Parse([]byte("models:\n  - id: emb\n    source: file:/models/emb.gguf\n    embedding: maybe\n"))
	if err == nil || !strings.Contains(err.Error(), `models[0] "emb"`) {
		t.Fatalf("not a boolean: %v", err)
	}
}

func TestParseJSON(t *testing.T) {
	// JSON is YAML: the same file in JSON reads the same.
	f, err := Parse([]byte(`{"pools":[{"name":"p","transport":"local"}],"models":[{"id":"m","source":"file:/m.gguf","min_replicas":0}]}`))
	if err != nil || len(f.Pools) != 1 || f.Models[0].Slots != 4 {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "", []string{"empty"}},
		{"comment only", "# nothing\n", []string{"empty"}},
		{"not a mapping", "- 1\n", []string{"top level must be a mapping", "a list"}},
		{"unknown top field", "pools: []\nmodel: []\n", []string{`unknown top-level field "model"`}},
		{"syntax", "pools: [\n", []string{"line 1"}},
		{"tab", "pools:\n\t- name: x\n", []string{"line 2"}},
		{"duplicate key", "models:\n  - id: a\n    source: file:/a\n    source: file:/b\n", []string{"line 4", `key "source" already set`}},
		{"duplicate top key", "pools: []\npools: []\n", []string{"line 2", `"pools"`}},
		{"unknown field", "models:\n  - id: a\n    source: file:/a\n  - id: b\n    source: file:/b\n    slot: 8\n",
			[]string{`models[1] "b"`, `unknown field "slot"`, "did you mean slots?"}},
		{"other capitals", "pools:\n  - Name: p\n", []string{`pools[0]`, `unknown field "Name"`, "did you mean name?"}},
		{"pools not a list", "pools: {name: p}\n", []string{"pools must be a list"}},
		{"entry not a mapping", "models:\n  - qwen\n", []string{"models[0]", "must be a mapping"}},
		{"wrong type", "models:\n  - id: a\n    source: file:/a\n    slots: many\n", []string{`models[0] "a"`, "slots: want int, not string"}},
		{"bad duration", "models:\n  - id: a\n    source: file:/a\n    idle_ttl: soon\n", []string{`models[0] "a"`, "duration"}},
		{"invalid pool", "pools:\n  - name: p\n    transport: telnet\n", []string{`pools[0] "p"`, "transport"}},
		{"invalid model", "models:\n  - id: a\n    source: ftp://x\n", []string{`models[0] "a"`, "source"}},
		{"declared twice", "models:\n  - {id: a, source: file:/a}\n  - {id: a, source: file:/b}\n", []string{`models[1]`, "declared twice"}},
		{"missing id", "models:\n  - source: file:/a\n", []string{"models[0]", "id"}},
		{"huge int", "models:\n  - id: a\n    source: file:/a\n    slots: 99999999999999999999999\n", []string{`models[0] "a"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.in)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := append([]byte("pools: []\n"), bytes.Repeat([]byte("#"), MaxBytes)...)
	if _, err := Parse(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load("big.yaml", bytes.NewReader(big)); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.yaml") {
		t.Fatalf("Load err = %v", err)
	}
}

func TestParseExplicitEmptyLists(t *testing.T) {
	// Empty lists are a fleet of nothing (what prune-all needs), unlike an
	// empty document.
	f, err := Parse([]byte("pools: []\nmodels: []\n"))
	if err != nil || len(f.Pools)+len(f.Models) != 0 {
		t.Fatalf("%+v %v", f, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{example, "", "pools: []", "models:\n  - id: a\n    source: file:/a\n", "a: &x [*x]\n",
		"pools: [{name: p, labels: {a: 1, b: [1]}}]", "models: [{id: m, source: 'file:/a', idle_ttl: -1}]",
		"x: &a [1,2]\ny: &b [*a,*a,*a]\nz: [*b,*b,*b]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ff, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		// What parses is valid and plans nothing against itself.
		if err := ff.Validate(); err != nil {
			t.Fatalf("parsed file invalid: %v", err)
		}
		if plan := Plan(Current{Pools: ff.Pools, Models: ff.Models}, ff, true); HasChanges(plan) {
			t.Fatalf("plan against itself: %+v", plan)
		}
	})
}

// Hostile documents end in an error, not in exponential work.
func TestParseHostile(t *testing.T) {
	var laughs strings.Builder
	laughs.WriteString("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n")
	for i := 1; i < 10; i++ {
		laughs.WriteString(fmt.Sprintf("a%d: &a%d [", i, i))
		for j := range 10 {
			if j > 0 {
				laughs.WriteString(",")
			}
			laughs.WriteString(fmt.Sprintf("*a%d", i-1))
		}
		laughs.WriteString("]\n")
	}
	for name, in := range map[string]string{
		"aliases": laughs.String(),
		"depth":   strings.Repeat("[", 100000),
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
