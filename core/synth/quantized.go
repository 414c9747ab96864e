package synth

import (
	"fmt"
	"os"
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
	tmp := path + ".f16.tmp"
	defer os.Remove(tmp)
	if err := Write(tmp, p); err != nil {
		return err
	}
	part := path + ".part"
	if err := q(tmp, part, typ); err != nil {
		os.Remove(part)
		return fmt.Errorf("synth: quantize to %s: %w", typ, err)
	}
	return os.Rename(part, path)
}
