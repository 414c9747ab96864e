package synth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Quantizer converts an F16 GGUF file to another type (llama.cpp's
// llama_model_quantize, through backends/llamacpp).
type Quantizer func(in, out, typ string) error

// Types lists the tensor types WriteType accepts.
func Types() []string { return []string{"f16", "q8_0", "q4_0"} }

// WriteType writes preset p as typ: f16 directly, anything else by writing F16
// next to path and quantizing it with q.
func WriteType(path string, p Preset, typ string, q Quantizer) error {
	switch typ = strings.ToLower(typ); typ {
	case "f16":
		return Write(path, p)
	case "q8_0", "q4_0":
	default:
		return fmt.Errorf("synth: unknown type %q (want %s)", typ, strings.Join(Types(), ", "))
	}
	if q == nil {
		return fmt.Errorf("synth: type %s needs a quantizer", typ)
	}
	// Temporary names of this call alone, next to path: two writers of one
	// path never share a file, and the last rename wins.
	tmp, err := tempName(path, ".f16.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := Write(tmp, p); err != nil {
		return err
	}
	part, err := tempName(path, ".part")
	if err != nil {
		return err
	}
	defer os.Remove(part)
	if err := q(tmp, part, typ); err != nil {
		return fmt.Errorf("synth: quantize to %s: %w", typ, err)
	}
	if err := os.Rename(part, path); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

// tempName creates an empty file named like path+"*"+suffix in path's
// directory and returns its name.
func tempName(path, suffix string) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".*"+suffix)
	if err != nil {
		return "", fmt.Errorf("synth: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("synth: %w", err)
	}
	return f.Name(), nil
}
