package embed

import (
	"bytes"
	"io/fs"
	"slices"
	"testing"
)

func TestRoutingFiles(t *testing.T) {
	if !bytes.Contains(DefaultRoutingScript, []byte(`stage == "place"`)) {
		t.Errorf("DefaultRoutingScript does not look like the default script:\n%s", DefaultRoutingScript)
	}
	names, err := fs.Glob(RoutingExamples, "*.tengo")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pin_model_to_pool.tengo", "prefer_cheapest_gpu.tengo", "reject_big_batch.tengo"}
	if !slices.Equal(names, want) {
		t.Errorf("examples = %v, want %v", names, want)
	}
	// `routing examples` shows what the first line says after the name.
	scripts := map[string][]byte{"default.tengo": DefaultRoutingScript}
	for _, n := range names {
		scripts[n], _ = fs.ReadFile(RoutingExamples, n)
	}
	for n, src := range scripts {
		if line, _, _ := bytes.Cut(src, []byte("\n")); !bytes.HasPrefix(line, []byte("// "+n+": ")) || len(line) < len("// "+n+": ")+10 {
			t.Errorf("%s starts with %q, want \"// %s: what it does\"", n, line, n)
		}
	}
}
