package catalog

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/llorch/llorch/core/gguf"
)

// Estimate methods, the values of [Info.Estimate].
const (
	// EstimateParser: gguf-parser-go's llama.cpp estimate (weights, KV cache
	// at F16, compute buffers for a 2048/512 batch, runtime footprint).
	EstimateParser = "gguf-parser"
	// EstimateFormula: weights + KV cache (2 × n_layer × ctx × n_embd_kv × 2
	// bytes) + FormulaComputeBytes, used when the parser cannot estimate.
	EstimateFormula = "formula"
)

// FormulaComputeBytes is the fixed compute-buffer allowance of
// EstimateFormula.
const FormulaComputeBytes = 256 << 20

// fallbackCtx is the context size used when neither the caller nor the file
// gives one.
const fallbackCtx = 4096

// Info is what a GGUF header says about a model, plus memory estimates for a
// context size. It is what `pool models info ID --json` prints.
type Info struct {
	Arch            string  `json:"arch"`             // general.architecture, e.g. "llama", "qwen2"
	Name            string  `json:"name,omitempty"`   // general.name
	Type            string  `json:"type"`             // "model", "projector", "adapter", …
	Params          uint64  `json:"params"`           // parameter count
	FileType        string  `json:"file_type"`        // quantization, e.g. "Q4_K_M", "F16"; "Unknown"
	BitsPerWeight   float64 `json:"bits_per_weight"`  // average
	ContextLength   int     `json:"context_length"`   // trained context (n_ctx_train); 0 unknown
	Layers          int     `json:"layers"`           // n_layer
	EmbeddingLength int     `json:"embedding_length"` // n_embd
	ChatTemplate    bool    `json:"chat_template"`    // tokenizer.chat_template present
	SizeBytes       int64   `json:"size_bytes"`       // file size (all shards)
	Ctx             int     `json:"ctx"`              // the context size of the estimates
	EstRAMBytes     uint64  `json:"est_ram_bytes"`    // all layers on the CPU, weights resident
	EstVRAMBytes    uint64  `json:"est_vram_bytes"`   // all layers offloaded to one GPU: device memory
	Estimate        string  `json:"estimate"`         // EstimateParser or EstimateFormula
}

// Inspect reads the GGUF header of the file at path (not the tensor data)
// and estimates the memory to run it with a context of ctx tokens; ctx <= 0
// means the trained context length, as llama.cpp does for n_ctx = 0 (4096
// when the file gives none). A file that is not GGUF, or whose header is
// malformed, yields an error wrapping [ErrNotGGUF]; one shorter than its
// header says wraps [ErrTruncated]; a missing file wraps [ErrNotFound].
func Inspect(path string, ctx int) (Info, error) {
	if err := checkMagic(path); err != nil {
		return Info{}, fmt.Errorf("inspect: %w", err)
	}
	if err := CheckComplete(path); err != nil {
		return Info{}, fmt.Errorf("inspect: %w", err)
	}
	gf, err := parseGGUF(path)
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w: %v", path, ErrNotGGUF, err)
	}
	md := gf.Metadata()
	arch := gf.Architecture()
	info := Info{
		Arch:            md.Architecture,
		Name:            md.Name,
		Type:            md.Type,
		Params:          uint64(md.Parameters),
		FileType:        md.FileTypeDescriptor,
		BitsPerWeight:   float64(md.BitsPerWeight),
		ContextLength:   clampInt(arch.MaximumContextLength),
		Layers:          clampInt(arch.BlockCount),
		EmbeddingLength: clampInt(arch.EmbeddingLength),
		SizeBytes:       int64(min(uint64(gf.Size), math.MaxInt64)),
	}
	if math.IsNaN(info.BitsPerWeight) || math.IsInf(info.BitsPerWeight, 0) {
		info.BitsPerWeight = 0 // JSON cannot carry them
	}
	if kv, ok := gf.Header.MetadataKV.Get("tokenizer.chat_template"); ok && kv.ValueType == parser.GGUFMetadataValueTypeString {
		info.ChatTemplate = strings.TrimSpace(kv.ValueString()) != ""
	}
	switch {
	case ctx > 0:
		info.Ctx = min(ctx, math.MaxInt32)
	case info.ContextLength > 0:
		info.Ctx = min(info.ContextLength, math.MaxInt32)
	default:
		info.Ctx = fallbackCtx
	}
	info.EstRAMBytes, info.EstVRAMBytes, info.Estimate = estimate(gf, arch, info.Ctx)
	return info, nil
}

// CheckComplete reads the GGUF header of the file at path with core/gguf's
// reader and reports [ErrTruncated], with the expected and the actual size,
// when the file ends before the header or before the tensor data it
// describes. Other header problems are left to the caller's parser (this
// reader knows only the tensor types of the pinned ggml, so it cannot size
// newer ones); a file it cannot size is not called truncated.
func CheckComplete(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	gf, err := gguf.Read(bufio.NewReaderSize(f, 1<<16))
	if errors.Is(err, gguf.ErrTruncated) {
		return fmt.Errorf("%w: %s has %d bytes and ends inside its GGUF header (%v): the copy or download was cut short", ErrTruncated, path, st.Size(), err)
	}
	if err != nil {
		return nil
	}
	if want := gf.DataOffset + gf.DataSize; st.Size() < want {
		return fmt.Errorf("%w: %s has %d bytes, its GGUF header describes %d (%d missing): the copy or download was cut short",
			ErrTruncated, path, st.Size(), want, want-st.Size())
	}
	return nil
}

// parseGGUF parses the header, turning a parser panic into an error.
func parseGGUF(path string) (gf *parser.GGUFFile, err error) {
	defer func() {
		if p := recover(); p != nil {
			gf, err = nil, fmt.Errorf("malformed header: %v", p)
		}
	}()
	return parser.ParseGGUFFile(path, parser.SkipLargeMetadata())
}

// estimate returns RAM (no offload) and VRAM (full offload) estimates from
// gguf-parser-go, or from the documented formula when the parser panics or
// has nothing to say.
func estimate(gf *parser.GGUFFile, arch parser.GGUFArchitecture, ctx int) (ram, vram uint64, method string) {
	ram, vram, ok := parserEstimate(gf, ctx)
	if ok {
		return ram, vram, EstimateParser
	}
	m := formulaEstimate(uint64(gf.ModelSize), arch, uint64(ctx))
	return m, m, EstimateFormula
}

func parserEstimate(gf *parser.GGUFFile, ctx int) (ram, vram uint64, ok bool) {
	defer func() {
		if recover() != nil {
			ram, vram, ok = 0, 0, false
		}
	}()
	size := parser.WithLLaMACppContextSize(int32(ctx))
	cpu := gf.EstimateLLaMACppRun(size, parser.WithLLaMACppOffloadLayers(0)).SummarizeItem(false, 0, 0)
	gpu := gf.EstimateLLaMACppRun(size).SummarizeItem(true, 0, 0)
	ram = uint64(cpu.RAM.NonUMA)
	for _, v := range gpu.VRAMs {
		vram += uint64(v.NonUMA)
	}
	return ram, vram, ram > 0 && vram > 0
}

// formulaEstimate is weights + KV cache + a fixed compute buffer, with the KV
// cache at F16: 2 (K and V) × n_layer × ctx × n_embd_kv × 2 bytes, where
// n_embd_kv = n_head_kv × head_dim.
func formulaEstimate(weights uint64, a parser.GGUFArchitecture, ctx uint64) uint64 {
	headDim := uint64(a.AttentionKeyLength)
	if headDim == 0 && a.AttentionHeadCount > 0 {
		headDim = a.EmbeddingLength / a.AttentionHeadCount
	}
	heads := a.AttentionHeadCountKV
	if heads == 0 {
		heads = a.AttentionHeadCount
	}
	embdKV := heads * headDim
	if embdKV == 0 {
		embdKV = a.EmbeddingLength
	}
	kv := satMul(satMul(satMul(2*2, a.BlockCount), ctx), embdKV)
	return satAdd(satAdd(weights, kv), FormulaComputeBytes)
}

func satMul(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

func clampInt(v uint64) int {
	return int(min(v, math.MaxInt32))
}
