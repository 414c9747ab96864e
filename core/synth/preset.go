package synth

import (
	"fmt"
	"strconv"

	"github.com/llorch/llorch/core/gguf"
)

// Preset is the shape of a synthetic model.
type Preset struct {
	// Name identifies the preset ("tiny", "qwen05"); it also seeds the weights.
	Name string
	// VocabSize is the number of tokens, including padding tokens.
	VocabSize int
	// Merges is the number of BPE merges to learn; fewer are learned if the
	// embedded text runs out of pairs.
	Merges int
	// EmbeddingLength is the hidden size (n_embd).
	EmbeddingLength int
	// BlockCount is the number of transformer layers (n_layer).
	BlockCount int
	// HeadCount and HeadCountKV are the attention heads for queries and for
	// keys/values (grouped-query attention when they differ).
	HeadCount, HeadCountKV int
	// FeedForwardLength is the inner size of the feed-forward block (n_ff).
	FeedForwardLength int
	// ContextLength is the training context length.
	ContextLength int
	// RopeFreqBase is the RoPE base frequency.
	RopeFreqBase float32
	// RMSEpsilon is the epsilon of the RMS norms.
	RMSEpsilon float32
	// PoolingType, when not 0, is written as llama.pooling_type (1 mean,
	// 2 cls, 3 last): how an embedding worker pools the model's vectors.
	PoolingType uint32
	// Chat is the chat family of the template and control tokens; the
	// zero value is ChatML.
	Chat Chat
}

// Tiny is a very small model (about 0.3 MB in F16) for unit tests.
func Tiny() Preset {
	return Preset{
		Name:              "tiny",
		VocabSize:         768,
		Merges:            300,
		EmbeddingLength:   64,
		BlockCount:        2,
		HeadCount:         4,
		HeadCountKV:       2,
		FeedForwardLength: 128,
		ContextLength:     4096,
		RopeFreqBase:      10000,
		RMSEpsilon:        1e-5,
	}
}

// Qwen05 has the shape of Qwen2.5-0.5B (about 991 MB in F16), for benchmarks.
func Qwen05() Preset {
	return Preset{
		Name:              "qwen05",
		VocabSize:         151936,
		Merges:            2000,
		EmbeddingLength:   896,
		BlockCount:        24,
		HeadCount:         14,
		HeadCountKV:       2,
		FeedForwardLength: 4864,
		ContextLength:     32768,
		RopeFreqBase:      1000000,
		RMSEpsilon:        1e-6,
	}
}

// TinyChat is Tiny with the template and control tokens of chat family c,
// named "tiny-" and the family (so its weights differ from Tiny's); for
// ChatML it is Tiny.
func TinyChat(c Chat) Preset {
	p := Tiny()
	if c != ChatML {
		p.Name, p.Chat = "tiny-"+string(c), c
	}
	return p
}

// PresetNames lists the names PresetByName accepts.
func PresetNames() []string { return []string{"tiny", "qwen05"} }

// PresetByName returns the preset called name.
func PresetByName(name string) (Preset, error) {
	switch name {
	case "tiny":
		return Tiny(), nil
	case "qwen05":
		return Qwen05(), nil
	}
	return Preset{}, fmt.Errorf("synth: unknown preset %q (have %v)", name, PresetNames())
}

// Validate reports whether the shape is usable.
func (p Preset) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("synth: preset has no name")
	case p.EmbeddingLength <= 0 || p.BlockCount <= 0 || p.FeedForwardLength <= 0 || p.ContextLength <= 0:
		return fmt.Errorf("synth: preset %q: sizes must be positive", p.Name)
	case p.HeadCount <= 0 || p.HeadCountKV <= 0 || p.EmbeddingLength%p.HeadCount != 0 || p.HeadCount%p.HeadCountKV != 0:
		return fmt.Errorf("synth: preset %q: %d heads / %d kv heads do not divide n_embd %d", p.Name, p.HeadCount, p.HeadCountKV, p.EmbeddingLength)
	case p.Merges < 0:
		return fmt.Errorf("synth: preset %q: negative merge count", p.Name)
	case p.VocabSize < 256+p.Merges+3:
		return fmt.Errorf("synth: preset %q: vocab size %d is below 256 bytes + %d merges + 3 control tokens", p.Name, p.VocabSize, p.Merges)
	case !(p.RopeFreqBase > 0) || !(p.RMSEpsilon > 0):
		return fmt.Errorf("synth: preset %q: rope base and rms epsilon must be positive", p.Name)
	}
	spec, err := p.Chat.spec()
	if err != nil {
		return err
	}
	if p.VocabSize < 256+p.Merges+3+len(spec.control) {
		return fmt.Errorf("synth: preset %q: vocab size %d is below 256 bytes + %d merges + %d control tokens", p.Name, p.VocabSize, p.Merges, 3+len(spec.control))
	}
	return nil
}

// HeadDim is the size of one attention head.
func (p Preset) HeadDim() int { return p.EmbeddingLength / p.HeadCount }

// Tensors returns the tensor infos of the model in file order: 1-D norm
// weights are F32, matrices F16. Dims follow ggml order (input size first).
// The output projection is tied to token_embd and has no tensor of its own.
func (p Preset) Tensors() []gguf.TensorInfo {
	embd := int64(p.EmbeddingLength)
	embdKV := int64(p.HeadCountKV * p.HeadDim())
	ff := int64(p.FeedForwardLength)
	f16 := func(name string, dims ...int64) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Dims: dims, Type: gguf.GGMLTypeF16}
	}
	f32 := func(name string, dims ...int64) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Dims: dims, Type: gguf.GGMLTypeF32}
	}
	ts := []gguf.TensorInfo{f16("token_embd.weight", embd, int64(p.VocabSize))}
	for i := range p.BlockCount {
		b := "blk." + strconv.Itoa(i) + "."
		ts = append(ts,
			f32(b+"attn_norm.weight", embd),
			f16(b+"attn_q.weight", embd, embd),
			f16(b+"attn_k.weight", embd, embdKV),
			f16(b+"attn_v.weight", embd, embdKV),
			f16(b+"attn_output.weight", embd, embd),
			f32(b+"ffn_norm.weight", embd),
			f16(b+"ffn_gate.weight", embd, ff),
			f16(b+"ffn_up.weight", embd, ff),
			f16(b+"ffn_down.weight", ff, embd),
		)
	}
	return append(ts, f32("output_norm.weight", embd))
}

// NumParams is the number of weights of the model.
func (p Preset) NumParams() int64 {
	var n int64
	for _, ti := range p.Tensors() {
		e, _ := ti.NumElements()
		n += e
	}
	return n
}
