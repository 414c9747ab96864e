package testkit

import (
	"path/filepath"
	"testing"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
)

// LoadModel writes preset's synthetic model to the test's temporary directory
// and loads it with llama.cpp; the model is closed when the test ends.
func LoadModel(t testing.TB, preset synth.Preset) *llamacpp.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), preset.Name+".gguf")
	if err := synth.Write(path, preset); err != nil {
		t.Fatal(err)
	}
	m, err := llamacpp.Load(path, llamacpp.LoadParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
