package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// File is the parsed header of a GGUF file: everything before the data
// section.
type File struct {
	// Version is the GGUF version (2 or 3).
	Version uint32
	// KV holds the metadata in file order.
	KV []KV
	// Tensors holds the tensor infos in file order.
	Tensors []TensorInfo
	// Alignment is the data alignment in bytes.
	Alignment int64
	// DataOffset is the absolute file position of the data section.
	DataOffset int64
	// DataSize is the number of bytes of the data section that tensors use:
	// the end of the tensor data that ends last, without trailing padding.
	DataSize int64
}

// ReadFile parses the GGUF file at path and checks that the file is long
// enough to hold all tensor data.
func ReadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	gf, err := Read(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if end := gf.DataOffset + gf.DataSize; st.Size() < end {
		return nil, fmt.Errorf("%s: %w: file has %d bytes, tensor data ends at %d", path, ErrTruncated, st.Size(), end)
	}
	return gf, nil
}

// Read parses a GGUF header from r, consuming everything up to the end of the
// tensor infos (not the padding before the data section). It accepts GGUF
// versions 2 and 3 in little-endian byte order and applies the limits
// documented in the package comment.
func Read(r io.Reader) (*File, error) {
	d := &decoder{r: r, budget: MaxHeaderBytes}
	f, err := d.file()
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d *decoder) file() (*File, error) {
	var magic [4]byte
	if err := d.full(magic[:], "magic"); err != nil {
		if errors.Is(err, ErrTruncated) {
			return nil, ErrNotGGUF
		}
		return nil, err
	}
	if string(magic[:]) != Magic {
		return nil, ErrNotGGUF
	}
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 2 || version == 3:
	case version&0xffff == 0 && version != 0:
		return nil, fmt.Errorf("%w: big-endian files are not supported", ErrVersion)
	default:
		return nil, fmt.Errorf("%w: %d", ErrVersion, version)
	}
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return nil, err
	}
	if nTensors > MaxTensors {
		return nil, fmt.Errorf("%w: %d tensors, at most %d allowed", ErrLimit, nTensors, MaxTensors)
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return nil, err
	}
	if nKV > MaxKVs {
		return nil, fmt.Errorf("%w: %d metadata entries, at most %d allowed", ErrLimit, nKV, MaxKVs)
	}

	f := &File{Version: version}
	f.KV = make([]KV, 0, min(nKV, 256))
	keys := make(map[string]struct{}, min(nKV, 256))
	for i := uint64(0); i < nKV; i++ {
		kv, err := d.kv()
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, err)
		}
		if _, dup := keys[kv.Key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrInvalid, kv.Key)
		}
		keys[kv.Key] = struct{}{}
		f.KV = append(f.KV, kv)
	}
	if f.Alignment, err = alignmentOf(f.KV); err != nil {
		return nil, err
	}

	f.Tensors = make([]TensorInfo, 0, min(nTensors, 1024))
	names := make(map[string]struct{}, min(nTensors, 1024))
	for i := uint64(0); i < nTensors; i++ {
		ti, err := d.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		if _, dup := names[ti.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrInvalid, ti.Name)
		}
		names[ti.Name] = struct{}{}
		size, err := ti.Size()
		if err != nil {
			return nil, err
		}
		if ti.Offset%f.Alignment != 0 {
			return nil, fmt.Errorf("%w: tensor %q offset %d is not a multiple of the alignment %d", ErrInvalid, ti.Name, ti.Offset, f.Alignment)
		}
		if ti.Offset > (1<<63-1)-size {
			return nil, fmt.Errorf("%w: tensor %q ends beyond the largest file offset", ErrInvalid, ti.Name)
		}
		f.DataSize = max(f.DataSize, ti.Offset+size)
		f.Tensors = append(f.Tensors, ti)
	}
	var ok bool
	if f.DataOffset, ok = alignUp(d.n, f.Alignment); !ok || f.DataOffset > (1<<63-1)-f.DataSize {
		return nil, fmt.Errorf("%w: data section ends beyond the largest file offset", ErrInvalid)
	}
	return f, nil
}

// decoder reads little-endian GGUF values, counting the bytes consumed and
// charging them against a budget.
type decoder struct {
	r      io.Reader
	n      int64 // bytes consumed
	budget int64 // bytes that may still be consumed
	buf    [8]byte
}

// full reads exactly len(p) bytes.
func (d *decoder) full(p []byte, what string) error {
	if int64(len(p)) > d.budget {
		return fmt.Errorf("%w: header larger than %d bytes", ErrLimit, MaxHeaderBytes)
	}
	n, err := io.ReadFull(d.r, p)
	d.n += int64(n)
	d.budget -= int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: reading %s", ErrTruncated, what)
		}
		return fmt.Errorf("gguf: reading %s: %w", what, err)
	}
	return nil
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.full(d.buf[:4], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(d.buf[:4]), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if err := d.full(d.buf[:8], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.buf[:8]), nil
}

// bytes reads n bytes, allocating as data arrives so that a large claimed
// length in a short input does not allocate much.
func (d *decoder) bytes(n uint64, what string) ([]byte, error) {
	const chunk = 1 << 16
	if n > uint64(d.budget) {
		return nil, fmt.Errorf("%w: %s of %d bytes exceeds the header limit", ErrLimit, what, n)
	}
	if n <= chunk {
		b := make([]byte, n)
		return b, d.full(b, what)
	}
	var b []byte
	for uint64(len(b)) < n {
		m := min(n-uint64(len(b)), chunk)
		b = slices.Grow(b, int(m))[:len(b)+int(m)]
		if err := d.full(b[uint64(len(b))-m:], what); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (d *decoder) str(what string, limit uint64) (string, error) {
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("%w: %s of %d bytes, at most %d allowed", ErrLimit, what, n, limit)
	}
	b, err := d.bytes(n, what)
	return string(b), err
}

func (d *decoder) kv() (KV, error) {
	key, err := d.str("key", MaxKeyLen)
	if err != nil {
		return KV{}, err
	}
	if key == "" {
		return KV{}, fmt.Errorf("%w: empty metadata key", ErrInvalid)
	}
	t, err := d.u32("value type")
	if err != nil {
		return KV{}, fmt.Errorf("key %q: %w", key, err)
	}
	var v any
	if ValueType(t) == TypeArray {
		v, err = d.array()
	} else {
		v, err = d.scalar(ValueType(t))
	}
	if err != nil {
		return KV{}, fmt.Errorf("key %q: %w", key, err)
	}
	return KV{Key: key, Value: v}, nil
}

func (d *decoder) scalar(t ValueType) (any, error) {
	if t == TypeString {
		return d.str("string value", MaxStringLen)
	}
	size := t.size()
	if size == 0 {
		return nil, fmt.Errorf("%w: unknown value type %d", ErrInvalid, uint32(t))
	}
	if err := d.full(d.buf[:size], "value"); err != nil {
		return nil, err
	}
	return decodeScalar(t, d.buf[:size])
}

// decodeScalar decodes a fixed-size scalar of type t from b.
func decodeScalar(t ValueType, b []byte) (any, error) {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return b[0], nil
	case TypeInt8:
		return int8(b[0]), nil
	case TypeUint16:
		return le.Uint16(b), nil
	case TypeInt16:
		return int16(le.Uint16(b)), nil
	case TypeUint32:
		return le.Uint32(b), nil
	case TypeInt32:
		return int32(le.Uint32(b)), nil
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(b)), nil
	case TypeBool:
		if b[0] > 1 {
			return nil, fmt.Errorf("%w: bool value %d", ErrInvalid, b[0])
		}
		return b[0] == 1, nil
	case TypeUint64:
		return le.Uint64(b), nil
	case TypeInt64:
		return int64(le.Uint64(b)), nil
	case TypeFloat64:
		return math.Float64frombits(le.Uint64(b)), nil
	}
	return nil, fmt.Errorf("%w: unknown value type %d", ErrInvalid, uint32(t))
}

func (d *decoder) array() (any, error) {
	t, err := d.u32("array element type")
	if err != nil {
		return nil, err
	}
	et := ValueType(t)
	n, err := d.u64("array length")
	if err != nil {
		return nil, err
	}
	if n > MaxArrayLen {
		return nil, fmt.Errorf("%w: array of %d elements, at most %d allowed", ErrLimit, n, MaxArrayLen)
	}
	switch et {
	case TypeArray:
		return nil, fmt.Errorf("%w: nested arrays are not supported", ErrInvalid)
	case TypeString:
		// Every string takes at least its 8-byte length.
		if n*8 > uint64(d.budget) {
			return nil, fmt.Errorf("%w: array of %d strings exceeds the header limit", ErrLimit, n)
		}
		out := make([]string, 0, min(n, 4096))
		for i := uint64(0); i < n; i++ {
			s, err := d.str("string element", MaxStringLen)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case TypeUint8:
		return d.bytes(n, "uint8 array")
	}
	size := et.size()
	if size == 0 {
		return nil, fmt.Errorf("%w: unknown array element type %d", ErrInvalid, t)
	}
	raw, err := d.bytes(n*uint64(size), et.String()+" array") // n*size < 2^29: no overflow
	if err != nil {
		return nil, err
	}
	return decodeArray(et, raw, int(n))
}

// decodeArray decodes n fixed-size elements of type t from raw.
func decodeArray(t ValueType, raw []byte, n int) (any, error) {
	le := binary.LittleEndian
	switch t {
	case TypeInt8:
		out := make([]int8, n)
		for i := range out {
			out[i] = int8(raw[i])
		}
		return out, nil
	case TypeUint16:
		out := make([]uint16, n)
		for i := range out {
			out[i] = le.Uint16(raw[2*i:])
		}
		return out, nil
	case TypeInt16:
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(le.Uint16(raw[2*i:]))
		}
		return out, nil
	case TypeUint32:
		out := make([]uint32, n)
		for i := range out {
			out[i] = le.Uint32(raw[4*i:])
		}
		return out, nil
	case TypeInt32:
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case TypeFloat32:
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return out, nil
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			if raw[i] > 1 {
				return nil, fmt.Errorf("%w: bool value %d", ErrInvalid, raw[i])
			}
			out[i] = raw[i] == 1
		}
		return out, nil
	case TypeUint64:
		out := make([]uint64, n)
		for i := range out {
			out[i] = le.Uint64(raw[8*i:])
		}
		return out, nil
	case TypeInt64:
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
		return out, nil
	case TypeFloat64:
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown array element type %d", ErrInvalid, uint32(t))
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	name, err := d.str("tensor name", MaxTensorNameLen)
	if err != nil {
		return TensorInfo{}, err
	}
	if err := checkTensorName(name); err != nil {
		return TensorInfo{}, err
	}
	ti := TensorInfo{Name: name}
	nDims, err := d.u32("dimension count")
	if err != nil {
		return ti, err
	}
	if nDims > MaxDims {
		return ti, fmt.Errorf("%w: tensor %q has %d dimensions, at most %d allowed", ErrInvalid, name, nDims, MaxDims)
	}
	ti.Dims = make([]int64, nDims)
	for i := range ti.Dims {
		v, err := d.u64("dimension")
		if err != nil {
			return ti, err
		}
		if v == 0 || v > 1<<63-1 {
			return ti, fmt.Errorf("%w: tensor %q dimension %d is %d", ErrInvalid, name, i, v)
		}
		ti.Dims[i] = int64(v)
	}
	t, err := d.u32("tensor type")
	if err != nil {
		return ti, err
	}
	ti.Type = GGMLType(t)
	off, err := d.u64("tensor offset")
	if err != nil {
		return ti, err
	}
	if off > 1<<63-1 {
		return ti, fmt.Errorf("%w: tensor %q offset %d", ErrInvalid, name, off)
	}
	ti.Offset = int64(off)
	return ti, nil
}

// Lookup returns the value of key.
func (f *File) Lookup(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// String returns the value of key if it is a string.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Lookup(key)
	s, ok := v.(string)
	return s, ok
}

// Strings returns the value of key if it is an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Lookup(key)
	s, ok := v.([]string)
	return s, ok
}

// Bool returns the value of key if it is a bool.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Lookup(key)
	b, ok := v.(bool)
	return b, ok
}

// Uint returns the value of key if it is an integer that is not negative,
// whatever its width.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Lookup(key)
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	case int8:
		return uint64(v), v >= 0
	case int16:
		return uint64(v), v >= 0
	case int32:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	}
	return 0, false
}

// Float returns the value of key if it is a float32 or float64.
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Lookup(key)
	switch v := v.(type) {
	case float32:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// Architecture returns general.architecture, or "" if it is missing.
func (f *File) Architecture() string {
	s, _ := f.String(KeyArchitecture)
	return s
}

// ArchUint returns the unsigned integer "<architecture>.<name>", e.g.
// ArchUint("context_length") reads "llama.context_length" for a llama model.
func (f *File) ArchUint(name string) (uint64, bool) {
	arch := f.Architecture()
	if arch == "" {
		return 0, false
	}
	return f.Uint(arch + "." + strings.TrimPrefix(name, "."))
}

// ContextLength returns the training context length of the model.
func (f *File) ContextLength() (uint64, bool) {
	return f.ArchUint("context_length")
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	for _, ti := range f.Tensors {
		if ti.Name == name {
			return ti, true
		}
	}
	return TensorInfo{}, false
}
