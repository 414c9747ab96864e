package grammar_test

import (
	"sort"
	"testing"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/grammar"
)

// TestLlamaCppParses hands every table grammar, the json_object grammar and
// the grammars of generated schemas to llama.cpp's own GBNF parser (grammar
// sampler without a vocabulary).
func TestLlamaCppParses(t *testing.T) {
	if err := llamacpp.ParseGrammar("root ::= undefined-rule\n"); err == nil {
		t.Fatal("llama.cpp accepted a grammar with an undefined rule: the check checks nothing")
	}
	if err := llamacpp.ParseGrammar(grammar.JSONObject()); err != nil {
		t.Fatalf("json_object grammar: %v", err)
	}
	schemas := grammar.TableSchemas()
	names := make([]string, 0, len(schemas))
	for n := range schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g, err := grammar.FromSchema([]byte(schemas[n]))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if err := llamacpp.ParseGrammar(g); err != nil {
			t.Errorf("%s: llama.cpp refuses the grammar: %v\n%s", n, err, g)
		}
	}
	parsed := 0
	for _, s := range grammar.GeneratedSchemas(300, 1) {
		g, err := grammar.FromSchema(s)
		if err != nil {
			continue
		}
		parsed++
		if err := llamacpp.ParseGrammar(g); err != nil {
			t.Errorf("schema %s: llama.cpp refuses the grammar: %v\n%s", s, err, g)
		}
	}
	t.Logf("%d table grammars and %d generated ones parsed by llama.cpp", len(names), parsed)
}
