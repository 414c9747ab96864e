package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// allKVs covers every scalar and array value type, including empty arrays.
func allKVs() []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"t.uint8", uint8(200)},
		{"t.int8", int8(-100)},
		{"t.uint16", uint16(60000)},
		{"t.int16", int16(-30000)},
		{"t.uint32", uint32(4_000_000_000)},
		{"t.int32", int32(-2_000_000_000)},
		{"t.float32", float32(1.5e-6)},
		{"t.bool.true", true},
		{"t.bool.false", false},
		{"t.string", "héllo ✓"},
		{"t.string.empty", ""},
		{"t.uint64", uint64(1 << 63)},
		{"t.int64", int64(-1 << 62)},
		{"t.float64", math.Pi},
		{"a.uint8", []uint8{0, 1, 255}},
		{"a.int8", []int8{-128, 0, 127}},
		{"a.uint16", []uint16{0, 65535}},
		{"a.int16", []int16{-32768, 32767}},
		{"a.uint32", []uint32{1, 2, 3}},
		{"a.int32", []int32{-1, 0, 1}},
		{"a.float32", []float32{0.25, -8, float32(math.Inf(1))}},
		{"a.bool", []bool{true, false, true}},
		{"a.string", []string{"a", "", "Ġworld", strings.Repeat("x", 1000)}},
		{"a.uint64", []uint64{math.MaxUint64}},
		{"a.int64", []int64{math.MinInt64, math.MaxInt64}},
		{"a.float64", []float64{-0.5, 1e300}},
		{"a.string.empty", []string{}},
		{"a.int32.empty", []int32{}},
	}
}

func testTensors() []TensorInfo {
	return []TensorInfo{
		{Name: "norm", Dims: []int64{5}, Type: GGMLTypeF32},
		{Name: "w16", Dims: []int64{3, 7}, Type: GGMLTypeF16},
		{Name: "q8", Dims: []int64{64, 2}, Type: GGMLTypeQ8_0},
		{Name: "q4", Dims: []int64{32, 1, 3}, Type: GGMLTypeQ4_0},
		{Name: "scalar", Dims: nil, Type: GGMLTypeF32},
	}
}

// tensorData returns distinct deterministic bytes for every tensor.
func tensorData(t testing.TB, tensors []TensorInfo) [][]byte {
	t.Helper()
	out := make([][]byte, len(tensors))
	for i, ti := range tensors {
		n, err := ti.Size()
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j*7 + 1)
		}
		out[i] = b
	}
	return out
}

// encode writes a complete GGUF file, feeding the data in odd-sized pieces.
func encode(t testing.TB, kvs []KV, tensors []TensorInfo, data [][]byte) ([]byte, []TensorInfo) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kvs, tensors)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	all := bytes.Join(data, nil)
	for len(all) > 0 {
		n := min(len(all), 13)
		if _, err := w.Write(all[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		all = all[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes(), w.Tensors()
}

func TestRoundTrip(t *testing.T) {
	kvs := allKVs()
	tensors := testTensors()
	data := tensorData(t, tensors)
	raw, written := encode(t, kvs, tensors, data)

	f, err := Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if f.Version != Version {
		t.Errorf("Version = %d, want %d", f.Version, Version)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		for i := range kvs {
			if i < len(f.KV) && !reflect.DeepEqual(f.KV[i], kvs[i]) {
				t.Errorf("KV[%d] = %#v, want %#v", i, f.KV[i], kvs[i])
			}
		}
		t.Fatalf("read %d KVs, wrote %d", len(f.KV), len(kvs))
	}
	for i := range written {
		if written[i].Dims == nil {
			written[i].Dims = []int64{}
		}
	}
	if !reflect.DeepEqual(f.Tensors, written) {
		t.Errorf("Tensors = %+v, want %+v", f.Tensors, written)
	}
	if f.Alignment != DefaultAlignment || f.DataOffset%DefaultAlignment != 0 {
		t.Errorf("Alignment %d, DataOffset %d", f.Alignment, f.DataOffset)
	}
	for i, ti := range f.Tensors {
		start := f.DataOffset + ti.Offset
		got := raw[start : start+int64(len(data[i]))]
		if !bytes.Equal(got, data[i]) {
			t.Errorf("tensor %q data differs", ti.Name)
		}
	}
	last := f.Tensors[len(f.Tensors)-1]
	if want := last.Offset + 4; f.DataSize != want {
		t.Errorf("DataSize = %d, want %d", f.DataSize, want)
	}

	// Accessors.
	if f.Architecture() != "llama" {
		t.Errorf("Architecture() = %q", f.Architecture())
	}
	if v, ok := f.Uint("t.uint16"); !ok || v != 60000 {
		t.Errorf("Uint(t.uint16) = %d, %v", v, ok)
	}
	if _, ok := f.Uint("t.int8"); ok {
		t.Errorf("Uint of a negative int8 succeeded")
	}
	if v, ok := f.Float("t.float64"); !ok || v != math.Pi {
		t.Errorf("Float(t.float64) = %v, %v", v, ok)
	}
	if s, ok := f.Strings("a.string"); !ok || len(s) != 4 {
		t.Errorf("Strings(a.string) = %q, %v", s, ok)
	}
	if b, ok := f.Bool("t.bool.true"); !ok || !b {
		t.Errorf("Bool(t.bool.true) = %v, %v", b, ok)
	}
	if _, ok := f.String("missing"); ok {
		t.Errorf("String(missing) succeeded")
	}
	if ti, ok := f.Tensor("q8"); !ok || ti.Type != GGMLTypeQ8_0 {
		t.Errorf("Tensor(q8) = %+v, %v", ti, ok)
	}
}

func TestContextLength(t *testing.T) {
	raw, _ := encode(t, []KV{
		{KeyArchitecture, "qwen2"},
		{"qwen2.context_length", uint32(32768)},
	}, nil, nil)
	f, err := Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := f.ContextLength(); !ok || n != 32768 {
		t.Errorf("ContextLength() = %d, %v", n, ok)
	}
}

func TestAlignment(t *testing.T) {
	for _, align := range []uint32{0, 1, 8, 32, 64, 4096} {
		t.Run("", func(t *testing.T) {
			kvs := []KV{{"general.name", "x"}}
			want := int64(DefaultAlignment)
			if align != 0 {
				kvs = append(kvs, KV{KeyAlignment, align})
				want = int64(align)
			}
			tensors := testTensors()
			raw, _ := encode(t, kvs, tensors, tensorData(t, tensors))
			f, err := Read(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if f.Alignment != want {
				t.Fatalf("Alignment = %d, want %d", f.Alignment, want)
			}
			if f.DataOffset%want != 0 {
				t.Errorf("DataOffset %d not aligned to %d", f.DataOffset, want)
			}
			var off int64
			for _, ti := range f.Tensors {
				if ti.Offset != off {
					t.Errorf("tensor %q at %d, want %d", ti.Name, ti.Offset, off)
				}
				size, err := ti.Size()
				if err != nil {
					t.Fatal(err)
				}
				off, _ = alignUp(off+size, want) // tiny offsets: no overflow
			}
			if got := int64(len(raw)); got != f.DataOffset+off {
				t.Errorf("file is %d bytes, want %d (data ends padded)", got, f.DataOffset+off)
			}
			// Padding bytes are zero.
			cr := &countingReader{r: bytes.NewReader(raw)} // finds the end of the tensor infos
			if _, err := Read(cr); err != nil {
				t.Fatal(err)
			}
			for i := cr.n; i < f.DataOffset; i++ {
				if raw[i] != 0 {
					t.Fatalf("padding byte %d is %d", i, raw[i])
				}
			}
		})
	}
}

type countingReader struct {
	r *bytes.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestWriterErrors(t *testing.T) {
	ok := []TensorInfo{{Name: "a", Dims: []int64{4}, Type: GGMLTypeF32}}
	tests := []struct {
		name    string
		kvs     []KV
		tensors []TensorInfo
	}{
		{"empty key", []KV{{"", uint8(1)}}, ok},
		{"duplicate key", []KV{{"k", uint8(1)}, {"k", uint8(2)}}, ok},
		{"unsupported type", []KV{{"k", 1}}, ok},
		{"nested array", []KV{{"k", [][]string{{"a"}}}}, ok},
		{"alignment type", []KV{{KeyAlignment, uint64(32)}}, ok},
		{"alignment zero", []KV{{KeyAlignment, uint32(0)}}, ok},
		{"alignment not power of two", []KV{{KeyAlignment, uint32(48)}}, ok},
		{"empty tensor name", nil, []TensorInfo{{Name: "", Dims: []int64{4}}}},
		{"long tensor name", nil, []TensorInfo{{Name: strings.Repeat("n", 64), Dims: []int64{4}}}},
		{"duplicate tensor", nil, []TensorInfo{ok[0], ok[0]}},
		{"five dims", nil, []TensorInfo{{Name: "a", Dims: []int64{1, 1, 1, 1, 1}}}},
		{"zero dim", nil, []TensorInfo{{Name: "a", Dims: []int64{4, 0}}}},
		{"negative dim", nil, []TensorInfo{{Name: "a", Dims: []int64{-4}}}},
		{"overflow", nil, []TensorInfo{{Name: "a", Dims: []int64{1 << 40, 1 << 40}}}},
		{"unknown type", nil, []TensorInfo{{Name: "a", Dims: []int64{4}, Type: 4}}},
		{"row not block multiple", nil, []TensorInfo{{Name: "a", Dims: []int64{48, 2}, Type: GGMLTypeQ8_0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewWriter(&bytes.Buffer{}, tt.kvs, tt.tensors)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("NewWriter error = %v, want ErrInvalid", err)
			}
		})
	}

	t.Run("short data", func(t *testing.T) {
		w, err := NewWriter(&bytes.Buffer{}, nil, ok)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(make([]byte, 15))
		if err := w.Close(); !errors.Is(err, ErrShortData) {
			t.Errorf("Close error = %v, want ErrShortData", err)
		}
	})
	t.Run("too much data", func(t *testing.T) {
		w, err := NewWriter(&bytes.Buffer{}, nil, ok)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := w.Write(make([]byte, 17)); !errors.Is(err, ErrTooMuchData) || n != 16 {
			t.Errorf("Write = %d, %v, want 16, ErrTooMuchData", n, err)
		}
	})
	t.Run("write after close", func(t *testing.T) {
		w, err := NewWriter(&bytes.Buffer{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte{1}); err == nil {
			t.Error("Write after Close succeeded")
		}
	})
}

// hdr builds raw GGUF headers for reader error tests.
type hdr struct{ b []byte }

func newHdr(version uint32, nTensors, nKV uint64) *hdr {
	h := &hdr{b: []byte(Magic)}
	return h.u32(version).u64(nTensors).u64(nKV)
}
func (h *hdr) u32(v uint32) *hdr { h.b = binary.LittleEndian.AppendUint32(h.b, v); return h }
func (h *hdr) u64(v uint64) *hdr { h.b = binary.LittleEndian.AppendUint64(h.b, v); return h }
func (h *hdr) str(s string) *hdr { h.u64(uint64(len(s))); h.b = append(h.b, s...); return h }

func TestReadErrors(t *testing.T) {
	tensor := func(h *hdr, dims []uint64, typ uint32, off uint64) *hdr {
		h.str("t").u32(uint32(len(dims)))
		for _, d := range dims {
			h.u64(d)
		}
		return h.u32(typ).u64(off)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotGGUF},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), ErrNotGGUF},
		{"version 1", newHdr(1, 0, 0).b, ErrVersion},
		{"big endian", newHdr(3<<24, 0, 0).b, ErrVersion},
		{"no counts", []byte("GGUF\x03\x00\x00\x00"), ErrTruncated},
		{"too many tensors", newHdr(3, MaxTensors+1, 0).b, ErrLimit},
		{"too many kvs", newHdr(3, 0, 1<<40).b, ErrLimit},
		{"missing kv", newHdr(3, 0, 1).b, ErrTruncated},
		{"empty key", newHdr(3, 0, 1).str("").u32(uint32(TypeUint8)).b, ErrInvalid},
		{"huge key", newHdr(3, 0, 1).u64(1 << 20).b, ErrLimit},
		{"huge string", newHdr(3, 0, 1).str("k").u32(uint32(TypeString)).u64(1 << 62).b, ErrLimit},
		{"string past end", newHdr(3, 0, 1).str("k").u32(uint32(TypeString)).u64(1 << 20).b, ErrTruncated},
		{"unknown type", newHdr(3, 0, 1).str("k").u32(13).b, ErrInvalid},
		{"bad bool", append(newHdr(3, 0, 1).str("k").u32(uint32(TypeBool)).b, 2), ErrInvalid},
		{"duplicate key", append(append(newHdr(3, 0, 2).str("k").u32(uint32(TypeUint8)).b, 1),
			append((&hdr{}).str("k").u32(uint32(TypeUint8)).b, 1)...), ErrInvalid},
		{"huge array", newHdr(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint32)).u64(1 << 60).b, ErrLimit},
		{"huge string array", newHdr(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(MaxArrayLen).b, ErrLimit},
		{"array past end", newHdr(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint64)).u64(1 << 20).b, ErrTruncated},
		{"nested array", newHdr(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeArray)).u64(1).b, ErrInvalid},
		{"bad alignment", append(newHdr(3, 0, 1).str(KeyAlignment).u32(uint32(TypeUint32)).b, 3, 0, 0, 0), ErrInvalid},
		{"alignment wrong type", append(newHdr(3, 0, 1).str(KeyAlignment).u32(uint32(TypeUint8)).b, 32), ErrInvalid},
		{"tensor five dims", tensor(newHdr(3, 1, 0), []uint64{1, 1, 1, 1, 1}, 0, 0).b, ErrInvalid},
		{"tensor zero dim", tensor(newHdr(3, 1, 0), []uint64{0}, 0, 0).b, ErrInvalid},
		{"tensor huge dim", tensor(newHdr(3, 1, 0), []uint64{1 << 63}, 0, 0).b, ErrInvalid},
		{"tensor overflow", tensor(newHdr(3, 1, 0), []uint64{1 << 62, 4}, 0, 0).b, ErrInvalid},
		{"tensor bytes overflow", tensor(newHdr(3, 1, 0), []uint64{1 << 62}, 0, 0).b, ErrInvalid},
		{"tensor unknown type", tensor(newHdr(3, 1, 0), []uint64{4}, 5, 0).b, ErrInvalid},
		{"tensor block", tensor(newHdr(3, 1, 0), []uint64{33}, uint32(GGMLTypeQ4_0), 0).b, ErrInvalid},
		{"tensor misaligned", tensor(newHdr(3, 1, 0), []uint64{4}, 0, 16).b, ErrInvalid},
		{"tensor offset overflow", tensor(newHdr(3, 1, 0), []uint64{4}, 0, 1<<63-32).b, ErrInvalid},
		{"tensor long name", newHdr(3, 1, 0).str(strings.Repeat("n", 64)).b, ErrLimit},
		{"duplicate tensor", tensor(tensor(newHdr(3, 2, 0), []uint64{4}, 0, 0), []uint64{4}, 0, 32).b, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("Read error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	tensors := testTensors()
	raw, _ := encode(t, allKVs(), tensors, tensorData(t, tensors))
	f, err := Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	hdrLen := int(f.DataOffset)
	cr := &countingReader{r: bytes.NewReader(raw)}
	Read(cr)
	for n := 0; n < int(cr.n); n++ {
		_, err := Read(bytes.NewReader(raw[:n]))
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrNotGGUF) {
			t.Fatalf("Read of %d/%d bytes: error = %v", n, hdrLen, err)
		}
	}
}

func TestReadFile(t *testing.T) {
	tensors := testTensors()
	raw, _ := encode(t, allKVs(), tensors, tensorData(t, tensors))
	dir := t.TempDir()
	full := filepath.Join(dir, "full.gguf")
	short := filepath.Join(dir, "short.gguf")
	if err := os.WriteFile(full, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, raw[:len(raw)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(full); err != nil {
		t.Errorf("ReadFile(full): %v", err)
	}
	if _, err := ReadFile(short); !errors.Is(err, ErrTruncated) {
		t.Errorf("ReadFile(short) error = %v, want ErrTruncated", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v, want ErrNotExist", err)
	}
}
