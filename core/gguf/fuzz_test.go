package gguf

import (
	"bytes"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read. Read must never panic; whatever it
// accepts must be writable, and writing what was read must be stable
// (write(read(x)) == write(read(write(read(x))))).
func FuzzRead(f *testing.F) {
	tensors := testTensors()
	raw, _ := encode(f, allKVs(), tensors, tensorData(f, tensors))
	f.Add(raw)
	small, _ := encode(f, []KV{{KeyArchitecture, "llama"}, {"a", []string{"x", "y"}}},
		[]TensorInfo{{Name: "w", Dims: []int64{2, 2}, Type: GGMLTypeF16}}, [][]byte{make([]byte, 8)})
	f.Add(small)
	f.Add(newHdr(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(3).b)
	f.Add([]byte("GGUF"))

	f.Fuzz(func(t *testing.T, in []byte) {
		gf, err := Read(bytes.NewReader(in))
		if err != nil {
			return
		}
		if gf.Alignment > 1<<12 {
			return // the padding alone would be too large to rewrite cheaply
		}
		var total int64
		for _, ti := range gf.Tensors {
			n, err := ti.Size()
			if err != nil {
				t.Fatalf("Read accepted tensor %q that it cannot size: %v", ti.Name, err)
			}
			if total += n; total > 1<<20 {
				return // too large to rewrite cheaply
			}
		}
		once := rewrite(t, gf)
		gf2, err := Read(bytes.NewReader(once))
		if err != nil {
			t.Fatalf("reading rewritten file: %v", err)
		}
		if twice := rewrite(t, gf2); !bytes.Equal(once, twice) {
			t.Fatalf("rewrite is not stable")
		}
	})
}

// rewrite writes f again with zeroed tensor data.
func rewrite(t *testing.T, f *File) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, f.KV, f.Tensors)
	if err != nil {
		t.Fatalf("NewWriter rejects what Read accepted: %v", err)
	}
	for _, ti := range f.Tensors {
		n, err := ti.Size()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
