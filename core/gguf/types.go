package gguf

import (
	"errors"
	"fmt"
)

// Format constants.
const (
	// Magic is the first four bytes of every GGUF file.
	Magic = "GGUF"
	// Version is the format version the Writer produces.
	Version = 3
	// DefaultAlignment is the data alignment used when the metadata has no
	// [KeyAlignment] key.
	DefaultAlignment = 32
	// KeyAlignment is the metadata key that overrides the alignment. Its value
	// must be a uint32 power of two.
	KeyAlignment = "general.alignment"
	// KeyArchitecture names the model architecture, e.g. "llama".
	KeyArchitecture = "general.architecture"
	// MaxTensorNameLen is the longest tensor name ggml accepts, in bytes.
	MaxTensorNameLen = 63
	// MaxDims is the largest number of tensor dimensions ggml accepts.
	MaxDims = 4
	// MaxKeyLen is the longest metadata key, in bytes.
	MaxKeyLen = 1<<16 - 1
)

// Errors. Errors returned by this package wrap one of these where it applies.
var (
	// ErrInvalid means the arguments violate the format.
	ErrInvalid = errors.New("gguf: invalid")
	// ErrShortData means Close was called before all tensor data was written.
	ErrShortData = errors.New("gguf: short tensor data")
	// ErrTooMuchData means more tensor data was written than the tensors hold.
	ErrTooMuchData = errors.New("gguf: too much tensor data")
)

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// TypeOf reports the GGUF type of a metadata value. For arrays typ is
// [TypeArray] and elem the element type; otherwise elem is typ.
func TypeOf(v any) (typ, elem ValueType, err error) {
	switch v.(type) {
	case uint8:
		return TypeUint8, TypeUint8, nil
	case int8:
		return TypeInt8, TypeInt8, nil
	case uint16:
		return TypeUint16, TypeUint16, nil
	case int16:
		return TypeInt16, TypeInt16, nil
	case uint32:
		return TypeUint32, TypeUint32, nil
	case int32:
		return TypeInt32, TypeInt32, nil
	case float32:
		return TypeFloat32, TypeFloat32, nil
	case bool:
		return TypeBool, TypeBool, nil
	case string:
		return TypeString, TypeString, nil
	case uint64:
		return TypeUint64, TypeUint64, nil
	case int64:
		return TypeInt64, TypeInt64, nil
	case float64:
		return TypeFloat64, TypeFloat64, nil
	case []uint8:
		return TypeArray, TypeUint8, nil
	case []int8:
		return TypeArray, TypeInt8, nil
	case []uint16:
		return TypeArray, TypeUint16, nil
	case []int16:
		return TypeArray, TypeInt16, nil
	case []uint32:
		return TypeArray, TypeUint32, nil
	case []int32:
		return TypeArray, TypeInt32, nil
	case []float32:
		return TypeArray, TypeFloat32, nil
	case []bool:
		return TypeArray, TypeBool, nil
	case []string:
		return TypeArray, TypeString, nil
	case []uint64:
		return TypeArray, TypeUint64, nil
	case []int64:
		return TypeArray, TypeInt64, nil
	case []float64:
		return TypeArray, TypeFloat64, nil
	}
	return 0, 0, fmt.Errorf("%w: unsupported metadata value type %T", ErrInvalid, v)
}

// KV is one metadata key/value pair.
//
// Value holds one of these Go types, matching the GGUF value type of the same
// name: uint8, int8, uint16, int16, uint32, int32, uint64, int64, float32,
// float64, bool, string, or a slice of one of them for a GGUF array. Nested
// arrays are not supported (ggml rejects them too).
type KV struct {
	Key   string
	Value any
}

// GGMLType is the element type of a tensor (ggml's enum ggml_type).
type GGMLType uint32

// ggml tensor types. This project's models are written as F32 and F16 (and
// quantized by llama.cpp afterwards); the others are listed so that the
// Writer can size and lay out tensors of any type ggml knows.
const (
	GGMLTypeF32     GGMLType = 0
	GGMLTypeF16     GGMLType = 1
	GGMLTypeQ4_0    GGMLType = 2
	GGMLTypeQ4_1    GGMLType = 3
	GGMLTypeQ5_0    GGMLType = 6
	GGMLTypeQ5_1    GGMLType = 7
	GGMLTypeQ8_0    GGMLType = 8
	GGMLTypeQ8_1    GGMLType = 9
	GGMLTypeQ2_K    GGMLType = 10
	GGMLTypeQ3_K    GGMLType = 11
	GGMLTypeQ4_K    GGMLType = 12
	GGMLTypeQ5_K    GGMLType = 13
	GGMLTypeQ6_K    GGMLType = 14
	GGMLTypeQ8_K    GGMLType = 15
	GGMLTypeIQ2_XXS GGMLType = 16
	GGMLTypeIQ2_XS  GGMLType = 17
	GGMLTypeIQ3_XXS GGMLType = 18
	GGMLTypeIQ1_S   GGMLType = 19
	GGMLTypeIQ4_NL  GGMLType = 20
	GGMLTypeIQ3_S   GGMLType = 21
	GGMLTypeIQ2_S   GGMLType = 22
	GGMLTypeIQ4_XS  GGMLType = 23
	GGMLTypeI8      GGMLType = 24
	GGMLTypeI16     GGMLType = 25
	GGMLTypeI32     GGMLType = 26
	GGMLTypeI64     GGMLType = 27
	GGMLTypeF64     GGMLType = 28
	GGMLTypeIQ1_M   GGMLType = 29
	GGMLTypeBF16    GGMLType = 30
	GGMLTypeTQ1_0   GGMLType = 34
	GGMLTypeTQ2_0   GGMLType = 35
	GGMLTypeMXFP4   GGMLType = 39
)

// ggmlTraits describes the storage of a ggml type: blocks of blockElems
// elements take blockBytes bytes.
type ggmlTraits struct {
	name       string
	blockElems int64
	blockBytes int64
}

// traits returns the storage traits of t (values from ggml's type_traits
// table); ok is false for types this package does not know.
func (t GGMLType) traits() (tr ggmlTraits, ok bool) {
	switch t {
	case GGMLTypeF32:
		return ggmlTraits{"F32", 1, 4}, true
	case GGMLTypeF16:
		return ggmlTraits{"F16", 1, 2}, true
	case GGMLTypeQ4_0:
		return ggmlTraits{"Q4_0", 32, 18}, true
	case GGMLTypeQ4_1:
		return ggmlTraits{"Q4_1", 32, 20}, true
	case GGMLTypeQ5_0:
		return ggmlTraits{"Q5_0", 32, 22}, true
	case GGMLTypeQ5_1:
		return ggmlTraits{"Q5_1", 32, 24}, true
	case GGMLTypeQ8_0:
		return ggmlTraits{"Q8_0", 32, 34}, true
	case GGMLTypeQ8_1:
		return ggmlTraits{"Q8_1", 32, 36}, true
	case GGMLTypeQ2_K:
		return ggmlTraits{"Q2_K", 256, 84}, true
	case GGMLTypeQ3_K:
		return ggmlTraits{"Q3_K", 256, 110}, true
	case GGMLTypeQ4_K:
		return ggmlTraits{"Q4_K", 256, 144}, true
	case GGMLTypeQ5_K:
		return ggmlTraits{"Q5_K", 256, 176}, true
	case GGMLTypeQ6_K:
		return ggmlTraits{"Q6_K", 256, 210}, true
	case GGMLTypeQ8_K:
		return ggmlTraits{"Q8_K", 256, 292}, true
	case GGMLTypeIQ2_XXS:
		return ggmlTraits{"IQ2_XXS", 256, 66}, true
	case GGMLTypeIQ2_XS:
		return ggmlTraits{"IQ2_XS", 256, 74}, true
	case GGMLTypeIQ3_XXS:
		return ggmlTraits{"IQ3_XXS", 256, 98}, true
	case GGMLTypeIQ1_S:
		return ggmlTraits{"IQ1_S", 256, 50}, true
	case GGMLTypeIQ4_NL:
		return ggmlTraits{"IQ4_NL", 32, 18}, true
	case GGMLTypeIQ3_S:
		return ggmlTraits{"IQ3_S", 256, 110}, true
	case GGMLTypeIQ2_S:
		return ggmlTraits{"IQ2_S", 256, 82}, true
	case GGMLTypeIQ4_XS:
		return ggmlTraits{"IQ4_XS", 256, 136}, true
	case GGMLTypeI8:
		return ggmlTraits{"I8", 1, 1}, true
	case GGMLTypeI16:
		return ggmlTraits{"I16", 1, 2}, true
	case GGMLTypeI32:
		return ggmlTraits{"I32", 1, 4}, true
	case GGMLTypeI64:
		return ggmlTraits{"I64", 1, 8}, true
	case GGMLTypeF64:
		return ggmlTraits{"F64", 1, 8}, true
	case GGMLTypeIQ1_M:
		return ggmlTraits{"IQ1_M", 256, 56}, true
	case GGMLTypeBF16:
		return ggmlTraits{"BF16", 1, 2}, true
	case GGMLTypeTQ1_0:
		return ggmlTraits{"TQ1_0", 256, 54}, true
	case GGMLTypeTQ2_0:
		return ggmlTraits{"TQ2_0", 256, 66}, true
	case GGMLTypeMXFP4:
		return ggmlTraits{"MXFP4", 32, 17}, true
	}
	return ggmlTraits{}, false
}

func (t GGMLType) String() string {
	if tr, ok := t.traits(); ok {
		return tr.name
	}
	return fmt.Sprintf("GGMLType(%d)", uint32(t))
}

// TensorInfo describes one tensor.
type TensorInfo struct {
	// Name is the tensor name, e.g. "blk.0.attn_q.weight".
	Name string
	// Dims are the dimensions in ggml order: Dims[0] (ggml's ne[0]) varies
	// fastest, i.e. it is the row length.
	Dims []int64
	// Type is the element type.
	Type GGMLType
	// Offset is the position of the tensor data relative to the start of the
	// data section. The Writer computes it.
	Offset int64
}

// NumElements returns the product of the dimensions, or an error if a
// dimension is not positive or the product overflows.
func (ti TensorInfo) NumElements() (int64, error) {
	if len(ti.Dims) > MaxDims {
		return 0, fmt.Errorf("%w: tensor %q has %d dimensions, at most %d allowed", ErrInvalid, ti.Name, len(ti.Dims), MaxDims)
	}
	n := int64(1)
	for i, d := range ti.Dims {
		if d <= 0 {
			return 0, fmt.Errorf("%w: tensor %q dimension %d is %d, must be positive", ErrInvalid, ti.Name, i, d)
		}
		if n > (1<<63-1)/d {
			return 0, fmt.Errorf("%w: tensor %q element count overflows", ErrInvalid, ti.Name)
		}
		n *= d
	}
	return n, nil
}

// Size returns the number of bytes of the tensor data (without padding).
func (ti TensorInfo) Size() (int64, error) {
	n, err := ti.NumElements()
	if err != nil {
		return 0, err
	}
	tr, ok := ti.Type.traits()
	if !ok {
		return 0, fmt.Errorf("%w: tensor %q has unknown ggml type %d", ErrInvalid, ti.Name, uint32(ti.Type))
	}
	row := int64(1)
	if len(ti.Dims) > 0 {
		row = ti.Dims[0]
	}
	if row%tr.blockElems != 0 {
		return 0, fmt.Errorf("%w: tensor %q of type %s has rows of %d elements, not a multiple of the block size %d",
			ErrInvalid, ti.Name, tr.name, row, tr.blockElems)
	}
	blocks := n / tr.blockElems
	if blocks > (1<<63-1)/tr.blockBytes {
		return 0, fmt.Errorf("%w: tensor %q byte size overflows", ErrInvalid, ti.Name)
	}
	return blocks * tr.blockBytes, nil
}

// alignUp rounds n up to a multiple of align (a power of two). ok is false on
// overflow.
func alignUp(n, align int64) (int64, bool) {
	r := (n + align - 1) &^ (align - 1)
	return r, r >= n
}

// alignmentOf returns the alignment declared by the metadata, or
// DefaultAlignment when there is none.
func alignmentOf(kvs []KV) (int64, error) {
	for _, kv := range kvs {
		if kv.Key != KeyAlignment {
			continue
		}
		a, ok := kv.Value.(uint32)
		if !ok {
			return 0, fmt.Errorf("%w: %s has type %T, must be uint32", ErrInvalid, KeyAlignment, kv.Value)
		}
		if a == 0 || a&(a-1) != 0 {
			return 0, fmt.Errorf("%w: %s is %d, must be a power of two", ErrInvalid, KeyAlignment, a)
		}
		return int64(a), nil
	}
	return DefaultAlignment, nil
}

// checkTensorName validates a tensor name against ggml's rules.
func checkTensorName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty tensor name", ErrInvalid)
	}
	if len(name) > MaxTensorNameLen {
		return fmt.Errorf("%w: tensor name %.20q... is %d bytes, at most %d allowed", ErrInvalid, name, len(name), MaxTensorNameLen)
	}
	return nil
}
