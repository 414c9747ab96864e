package synth

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/llorch/llorch/core/gguf"
)

// FileTypeMostlyF16 is llama.cpp's LLAMA_FTYPE_MOSTLY_F16, stored in
// general.file_type.
const FileTypeMostlyF16 uint32 = 1

// weightScale bounds the uniform random weights: values lie in
// [-weightScale, weightScale].
const weightScale = 0.04

// chunkSize is how many bytes of tensor data are generated at a time.
const chunkSize = 1 << 20

// Write writes the F16 model for p to path. It writes to a temporary file in
// the same directory and renames it into place, so path is either absent, as
// before, or complete.
func Write(path string, p Preset) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".tmp*")
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := Encode(f, p); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

// Encode writes the F16 GGUF model for p to w.
func Encode(w io.Writer, p Preset) error {
	if err := p.Validate(); err != nil {
		return err
	}
	kvs, err := Metadata(p)
	if err != nil {
		return err
	}
	tensors := p.Tensors()
	gw, err := gguf.NewWriter(w, kvs, tensors)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	table := f16Table()
	buf := make([]byte, chunkSize)
	for _, ti := range tensors {
		size, err := ti.Size()
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		switch ti.Type {
		case gguf.GGMLTypeF32:
			err = writeOnes(gw, buf, size)
		case gguf.GGMLTypeF16:
			err = writeRandomF16(gw, buf, size, table, seed(p.Name, ti.Name))
		default:
			err = fmt.Errorf("synth: tensor %q: cannot generate type %s", ti.Name, ti.Type)
		}
		if err != nil {
			return err
		}
	}
	if err := gw.Close(); err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	return nil
}

// Metadata returns the GGUF metadata of the model for p: llama
// hyper-parameters and the tokenizer.
func Metadata(p Preset) ([]gguf.KV, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	spec, err := p.Chat.spec()
	if err != nil {
		return nil, err
	}
	v, err := NewVocab(p.VocabSize, p.Merges, spec.control...)
	if err != nil {
		return nil, err
	}
	u32 := func(n int) uint32 { return uint32(n) }
	kvs := []gguf.KV{
		{Key: gguf.KeyArchitecture, Value: "llama"},
		{Key: "general.name", Value: "synth-" + p.Name},
		{Key: "general.file_type", Value: FileTypeMostlyF16},
		{Key: "llama.vocab_size", Value: u32(p.VocabSize)},
		{Key: "llama.context_length", Value: u32(p.ContextLength)},
		{Key: "llama.embedding_length", Value: u32(p.EmbeddingLength)},
		{Key: "llama.block_count", Value: u32(p.BlockCount)},
		{Key: "llama.feed_forward_length", Value: u32(p.FeedForwardLength)},
		{Key: "llama.attention.head_count", Value: u32(p.HeadCount)},
		{Key: "llama.attention.head_count_kv", Value: u32(p.HeadCountKV)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: p.RMSEpsilon},
		{Key: "llama.rope.freq_base", Value: p.RopeFreqBase},
		{Key: "llama.rope.dimension_count", Value: u32(p.HeadDim())},
		{Key: "tokenizer.ggml.model", Value: "gpt2"},
		{Key: "tokenizer.ggml.pre", Value: "gpt-2"},
		{Key: "tokenizer.ggml.tokens", Value: v.Tokens},
		{Key: "tokenizer.ggml.token_type", Value: v.Types},
		{Key: "tokenizer.ggml.merges", Value: v.Merges},
		{Key: "tokenizer.ggml.bos_token_id", Value: u32(v.ID(spec.bos))},
		{Key: "tokenizer.ggml.eos_token_id", Value: u32(v.ID(spec.eos))},
		{Key: "tokenizer.ggml.add_bos_token", Value: spec.addBOS},
		{Key: "tokenizer.chat_template", Value: spec.template},
	}
	if p.PoolingType != 0 {
		kvs = append(kvs, gguf.KV{Key: "llama.pooling_type", Value: p.PoolingType})
	}
	return kvs, nil
}

// seed derives the PRNG seed of one tensor from the preset and tensor names.
func seed(preset, tensor string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(preset))
	h.Write([]byte{0})
	h.Write([]byte(tensor))
	return h.Sum64()
}

// splitMix64 is the SplitMix64 generator: tiny, fast and good enough for
// weights.
type splitMix64 struct{ state uint64 }

func (r *splitMix64) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// f16Table maps 16 random bits to a half-precision value uniform in
// [-weightScale, weightScale], so each random uint64 yields four weights
// without float arithmetic.
func f16Table() *[1 << 16]uint16 {
	var t [1 << 16]uint16
	for i := range t {
		x := (float64(i)+0.5)/(1<<15) - 1 // (-1, 1)
		t[i] = gguf.F32ToF16(float32(x * weightScale))
	}
	return &t
}

// writeRandomF16 writes size bytes of pseudo-random half-precision weights.
func writeRandomF16(w io.Writer, buf []byte, size int64, table *[1 << 16]uint16, seed uint64) error {
	rng := splitMix64{state: seed}
	for size > 0 {
		n := int(min(size, int64(len(buf))))
		b := buf[:n]
		i := 0
		for ; i+8 <= n; i += 8 {
			r := rng.next()
			binary.LittleEndian.PutUint16(b[i:], table[uint16(r)])
			binary.LittleEndian.PutUint16(b[i+2:], table[uint16(r>>16)])
			binary.LittleEndian.PutUint16(b[i+4:], table[uint16(r>>32)])
			binary.LittleEndian.PutUint16(b[i+6:], table[uint16(r>>48)])
		}
		if i < n {
			r := rng.next()
			for ; i+2 <= n; i += 2 {
				binary.LittleEndian.PutUint16(b[i:], table[uint16(r)])
				r >>= 16
			}
		}
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		size -= int64(n)
	}
	return nil
}

// writeOnes writes size bytes of float32 ones.
func writeOnes(w io.Writer, buf []byte, size int64) error {
	one := math.Float32bits(1)
	n := int(min(size, int64(len(buf))))
	for i := 0; i+4 <= n; i += 4 {
		binary.LittleEndian.PutUint32(buf[i:], one)
	}
	for size > 0 {
		m := int(min(size, int64(n)))
		if _, err := w.Write(buf[:m]); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		size -= int64(m)
	}
	return nil
}
