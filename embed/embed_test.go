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
}
