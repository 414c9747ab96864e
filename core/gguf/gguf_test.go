package gguf

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
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
		{"t.string", "héllo ✓"}, // no edge spaces: gguf-parser-go trims them
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
		{Name: "bf16", Dims: []int64{3}, Type: GGMLTypeBF16},
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

// parse writes raw to a file and reads it with gguf-parser-go, the project's
// GGUF reader (core/catalog's), as an independent check of the Writer.
func parse(t *testing.T, raw []byte) *parser.GGUFFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.gguf")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go refuses the Writer's output: %v", err)
	}
	return gf
}

// sameValue reports whether a value gguf-parser-go read is v, with the GGUF
// type the Writer gives v.
func sameValue(kv parser.GGUFMetadataKV, v any) bool {
	typ, elem, err := TypeOf(v)
	if err != nil || uint32(kv.ValueType) != uint32(typ) {
		return false
	}
	if typ != TypeArray {
		return reflect.DeepEqual(kv.Value, v)
	}
	av := kv.ValueArray()
	want := reflect.ValueOf(v)
	if uint32(av.Type) != uint32(elem) || av.Len != uint64(want.Len()) || len(av.Array) != want.Len() {
		return false
	}
	for i, got := range av.Array {
		if !reflect.DeepEqual(got, want.Index(i).Interface()) {
			return false
		}
	}
	return true
}

// What the Writer writes, gguf-parser-go reads back: every value type, the
// tensor infos with their offsets, and each tensor's data where the header
// says it is.
func TestRoundTrip(t *testing.T) {
	kvs := allKVs()
	tensors := testTensors()
	data := tensorData(t, tensors)
	raw, written := encode(t, kvs, tensors, data)
	gf := parse(t, raw)

	if gf.Header.Version != Version || gf.Header.TensorCount != uint64(len(tensors)) || gf.Header.MetadataKVCount != uint64(len(kvs)) {
		t.Errorf("header %+v: want version %d, %d tensors, %d KVs", gf.Header, Version, len(tensors), len(kvs))
	}
	if len(gf.Header.MetadataKV) != len(kvs) {
		t.Fatalf("read %d KVs, wrote %d", len(gf.Header.MetadataKV), len(kvs))
	}
	for i, kv := range gf.Header.MetadataKV {
		if kv.Key != kvs[i].Key || !sameValue(kv, kvs[i].Value) {
			t.Errorf("KV %d = %s (%v) %#v, want %s %#v", i, kv.Key, kv.ValueType, kv.Value, kvs[i].Key, kvs[i].Value)
		}
	}
	if gf.TensorDataStartOffset%DefaultAlignment != 0 {
		t.Errorf("tensor data starts at %d, not aligned to %d", gf.TensorDataStartOffset, DefaultAlignment)
	}
	if len(gf.TensorInfos) != len(written) {
		t.Fatalf("read %d tensors, wrote %d", len(gf.TensorInfos), len(written))
	}
	for i, ti := range gf.TensorInfos {
		w := written[i]
		dims := make([]int64, len(ti.Dimensions))
		for j, d := range ti.Dimensions {
			dims[j] = int64(d)
		}
		if ti.Name != w.Name || !reflect.DeepEqual(dims, w.Dims) || uint32(ti.Type) != uint32(w.Type) || ti.Offset != uint64(w.Offset) {
			t.Errorf("tensor %d = %s %v %v at %d, want %s %v %v at %d", i, ti.Name, dims, ti.Type, ti.Offset, w.Name, w.Dims, w.Type, w.Offset)
			continue
		}
		if ti.Bytes() != uint64(len(data[i])) {
			t.Errorf("tensor %q: the parser sizes it %d bytes, the Writer %d", ti.Name, ti.Bytes(), len(data[i]))
			continue
		}
		start := gf.TensorDataStartOffset + int64(ti.Offset)
		if got := raw[start : start+int64(len(data[i]))]; !bytes.Equal(got, data[i]) {
			t.Errorf("tensor %q data differs", ti.Name)
		}
	}
}

// The Writer sizes every ggml type as gguf-parser-go does (ggml's type
// traits), so a file it lays out is one the reader can size.
func TestTypeSizes(t *testing.T) {
	types := []GGMLType{GGMLTypeF32, GGMLTypeF16, GGMLTypeQ4_0, GGMLTypeQ4_1, GGMLTypeQ5_0, GGMLTypeQ5_1,
		GGMLTypeQ8_0, GGMLTypeQ8_1, GGMLTypeQ2_K, GGMLTypeQ3_K, GGMLTypeQ4_K, GGMLTypeQ5_K, GGMLTypeQ6_K,
		GGMLTypeQ8_K, GGMLTypeIQ2_XXS, GGMLTypeIQ2_XS, GGMLTypeIQ3_XXS, GGMLTypeIQ1_S, GGMLTypeIQ4_NL,
		GGMLTypeIQ3_S, GGMLTypeIQ2_S, GGMLTypeIQ4_XS, GGMLTypeI8, GGMLTypeI16, GGMLTypeI32, GGMLTypeI64,
		GGMLTypeF64, GGMLTypeIQ1_M, GGMLTypeBF16, GGMLTypeTQ1_0, GGMLTypeTQ2_0, GGMLTypeMXFP4}
	for _, typ := range types {
		ti := TensorInfo{Name: "w", Dims: []int64{512, 3, 2}, Type: typ}
		got, err := ti.Size()
		if err != nil {
			t.Errorf("%v: %v", typ, err)
			continue
		}
		want := parser.GGUFTensorInfo{NDimensions: 3, Dimensions: []uint64{512, 3, 2}, Type: parser.GGMLType(typ)}.Bytes()
		if uint64(got) != want {
			t.Errorf("%v: Size %d, gguf-parser-go %d", typ, got, want)
		}
	}
}

// With any alignment, the data section and every tensor start on it, the
// padding is zeros and the file ends with the last tensor's padded data.
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
			gf := parse(t, raw)
			if gf.TensorDataStartOffset%want != 0 {
				t.Errorf("tensor data starts at %d, not aligned to %d", gf.TensorDataStartOffset, want)
			}
			var off int64
			for i, ti := range gf.TensorInfos {
				if ti.Offset != uint64(off) {
					t.Errorf("tensor %q at %d, want %d", ti.Name, ti.Offset, off)
				}
				size, err := tensors[i].Size()
				if err != nil {
					t.Fatal(err)
				}
				off, _ = alignUp(off+size, want) // tiny offsets: no overflow
			}
			if got := int64(len(raw)); got != gf.TensorDataStartOffset+off {
				t.Errorf("file is %d bytes, want %d (data ends padded)", got, gf.TensorDataStartOffset+off)
			}
			// The header's padding is zeros.
			for i := gf.TensorDataStartOffset - gf.Padding; i < gf.TensorDataStartOffset; i++ {
				if raw[i] != 0 {
					t.Fatalf("padding byte %d is %d", i, raw[i])
				}
			}
		})
	}
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
