package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// writeBufferSize is the size of the Writer's output buffer.
const writeBufferSize = 1 << 20

// Writer writes a GGUF file. NewWriter writes the header, the metadata and the
// tensor infos; Write then takes the tensor data and Close finishes the file.
//
// Write accepts the data of all tensors concatenated in the order they were
// given to NewWriter, without padding: the Writer inserts the alignment
// padding between tensors. Data may be split across Write calls at any byte.
// A Writer is not safe for concurrent use.
type Writer struct {
	bw        *bufio.Writer
	tensors   []TensorInfo
	sizes     []int64
	alignment int64
	pos       int64 // bytes written to the output so far
	cur       int   // tensor whose data is being written
	written   int64 // bytes of tensors[cur] written so far
	err       error // sticky error
	closed    bool
}

// NewWriter validates the metadata and tensor infos, computes the tensor
// offsets and writes everything up to the data section to w. The Offset fields
// of tensors are ignored; [Writer.Tensors] reports the computed ones.
//
// The alignment is taken from a uint32 [KeyAlignment] entry in kvs, or is
// [DefaultAlignment]. The Writer buffers its output; it never closes w.
func NewWriter(w io.Writer, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	alignment, err := alignmentOf(kvs)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]struct{}, len(kvs))
	for _, kv := range kvs {
		if kv.Key == "" || len(kv.Key) > MaxKeyLen {
			return nil, fmt.Errorf("%w: metadata key of %d bytes, must be 1 to %d", ErrInvalid, len(kv.Key), MaxKeyLen)
		}
		if _, dup := keys[kv.Key]; dup {
			return nil, fmt.Errorf("%w: duplicate metadata key %q", ErrInvalid, kv.Key)
		}
		keys[kv.Key] = struct{}{}
		if _, _, err := TypeOf(kv.Value); err != nil {
			return nil, fmt.Errorf("key %q: %w", kv.Key, err)
		}
	}

	wr := &Writer{
		bw:        bufio.NewWriterSize(w, writeBufferSize),
		tensors:   make([]TensorInfo, len(tensors)),
		sizes:     make([]int64, len(tensors)),
		alignment: alignment,
	}
	names := make(map[string]struct{}, len(tensors))
	var off int64
	for i, ti := range tensors {
		if err := checkTensorName(ti.Name); err != nil {
			return nil, err
		}
		if _, dup := names[ti.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrInvalid, ti.Name)
		}
		names[ti.Name] = struct{}{}
		size, err := ti.Size()
		if err != nil {
			return nil, err
		}
		ti.Dims = append([]int64(nil), ti.Dims...)
		ti.Offset = off
		wr.tensors[i] = ti
		wr.sizes[i] = size
		padded, ok := alignUp(size, alignment)
		if !ok || off > (1<<63-1)-padded {
			return nil, fmt.Errorf("%w: total tensor data size overflows", ErrInvalid)
		}
		off += padded
	}

	if err := wr.writeHeader(kvs); err != nil {
		return nil, err
	}
	return wr, nil
}

// Tensors returns the tensor infos with their computed offsets.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, ti := range w.tensors {
		ti.Dims = append([]int64(nil), ti.Dims...)
		out[i] = ti
	}
	return out
}

func (w *Writer) writeHeader(kvs []KV) error {
	var b []byte
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, Version)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(w.tensors)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(kvs)))
	if err := w.raw(b); err != nil {
		return err
	}
	for _, kv := range kvs {
		b = appendString(b[:0], kv.Key)
		b = appendValue(b, kv.Value)
		if err := w.raw(b); err != nil {
			return err
		}
		if cap(b) > writeBufferSize {
			b = nil // don't keep a huge array encoding alive
		}
	}
	for _, ti := range w.tensors {
		b = appendString(b[:0], ti.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ti.Dims)))
		for _, d := range ti.Dims {
			b = binary.LittleEndian.AppendUint64(b, uint64(d))
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(ti.Type))
		b = binary.LittleEndian.AppendUint64(b, uint64(ti.Offset))
		if err := w.raw(b); err != nil {
			return err
		}
	}
	return w.pad()
}

// raw writes b to the output, keeping track of the position.
func (w *Writer) raw(b []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.bw.Write(b)
	w.pos += int64(n)
	if err != nil {
		w.err = fmt.Errorf("gguf: write: %w", err)
	}
	return w.err
}

// pad writes zero bytes up to the next multiple of the alignment.
func (w *Writer) pad() error {
	end, _ := alignUp(w.pos, w.alignment)
	if w.pos == end {
		return w.err
	}
	zeros := make([]byte, min(end-w.pos, 1<<16))
	for w.pos < end && w.err == nil {
		n := min(end-w.pos, int64(len(zeros)))
		w.raw(zeros[:n])
	}
	return w.err
}

// Write writes tensor data; see [Writer] for the layout. Writing more bytes
// than the tensors hold fails with [ErrTooMuchData].
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("%w: write after close", ErrInvalid)
	}
	done := 0
	for len(p) > 0 {
		if w.err != nil {
			return done, w.err
		}
		if w.cur >= len(w.tensors) {
			return done, fmt.Errorf("%w: %d bytes beyond the last tensor", ErrTooMuchData, len(p))
		}
		n := int(min(int64(len(p)), w.sizes[w.cur]-w.written))
		if err := w.raw(p[:n]); err != nil {
			return done, err
		}
		done += n
		p = p[n:]
		w.written += int64(n)
		if w.written == w.sizes[w.cur] {
			if err := w.pad(); err != nil {
				return done, err
			}
			w.cur++
			w.written = 0
		}
	}
	return done, nil
}

// Close checks that all tensor data was written and flushes the output. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.tensors) {
		w.err = fmt.Errorf("%w: tensor %q has %d of %d bytes", ErrShortData,
			w.tensors[w.cur].Name, w.written, w.sizes[w.cur])
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("gguf: write: %w", err)
	}
	return w.err
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendValue appends the type tag and encoding of v, which must have passed
// TypeOf.
func appendValue(b []byte, v any) []byte {
	typ, elem, _ := TypeOf(v)
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(typ))
	if typ == TypeArray {
		b = le.AppendUint32(b, uint32(elem))
	}
	switch v := v.(type) {
	case uint8:
		b = append(b, v)
	case int8:
		b = append(b, byte(v))
	case uint16:
		b = le.AppendUint16(b, v)
	case int16:
		b = le.AppendUint16(b, uint16(v))
	case uint32:
		b = le.AppendUint32(b, v)
	case int32:
		b = le.AppendUint32(b, uint32(v))
	case float32:
		b = le.AppendUint32(b, math.Float32bits(v))
	case bool:
		b = append(b, boolByte(v))
	case string:
		b = appendString(b, v)
	case uint64:
		b = le.AppendUint64(b, v)
	case int64:
		b = le.AppendUint64(b, uint64(v))
	case float64:
		b = le.AppendUint64(b, math.Float64bits(v))
	case []uint8:
		b = le.AppendUint64(b, uint64(len(v)))
		b = append(b, v...)
	case []int8:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = append(b, byte(x))
		}
	case []uint16:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint16(b, x)
		}
	case []int16:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint16(b, uint16(x))
		}
	case []uint32:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint32(b, x)
		}
	case []int32:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint32(b, uint32(x))
		}
	case []float32:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint32(b, math.Float32bits(x))
		}
	case []bool:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = append(b, boolByte(x))
		}
	case []string:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = appendString(b, x)
		}
	case []uint64:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint64(b, x)
		}
	case []int64:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint64(b, uint64(x))
		}
	case []float64:
		b = le.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = le.AppendUint64(b, math.Float64bits(x))
		}
	}
	return b
}
