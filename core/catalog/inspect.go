package catalog

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	parser "github.com/gpustack/gguf-parser-go"
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
	info, _, err := inspect(path, ctx, 1)
	return info, err
}

// inspect reads the header at path and describes it, with the estimate for
// ctx tokens per slot × slots.
func inspect(path string, ctx, slots int) (Info, Estimate, error) {
	return inspectWithin(path, ctx, slots, 0)
}

// inspectWithin is inspect; with within > 0 the header (up to the start of
// the tensor data) must lie in the first within bytes of the file, the ones
// that were read of a remote file.
func inspectWithin(path string, ctx, slots int, within int64) (Info, Estimate, error) {
	if err := checkMagic(path); err != nil {
		return Info{}, Estimate{}, fmt.Errorf("inspect: %w", err)
	}
	gf, err := parseWhole(path)
	if err != nil {
		return Info{}, Estimate{}, fmt.Errorf("inspect: %w", err)
	}
	if within > 0 && gf.TensorDataStartOffset > within {
		return Info{}, Estimate{}, fmt.Errorf("inspect: %w: the header is longer than the %d bytes read (%d)", ErrNotGGUF, within, gf.TensorDataStartOffset)
	}
	info, est, err := describe(gf, ctx, slots)
	if err != nil {
		return Info{}, Estimate{}, fmt.Errorf("inspect %s: %w: %v", path, ErrNotGGUF, err)
	}
	return info, est, nil
}

// describe turns a parsed header into Info, turning a parser panic (an
// accessor that meets a key of an unexpected type) into an error.
func describe(gf *parser.GGUFFile, ctx, slots int) (info Info, est Estimate, err error) {
	defer func() {
		if p := recover(); p != nil {
			info, est, err = Info{}, Estimate{}, fmt.Errorf("malformed header: %v", p)
		}
	}()
	md := gf.Metadata()
	arch := gf.Architecture()
	if err := checkBlockCount(arch); err != nil {
		return Info{}, Estimate{}, err
	}
	info = Info{
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
	// ctx and slots are below 2^31 each: the product fits an int64.
	slots = min(max(slots, 1), math.MaxInt32)
	est = estimateRun(gf, arch, min(info.Ctx*slots, math.MaxInt32), slots)
	est.SizeBytes = info.SizeBytes
	info.EstRAMBytes, info.EstVRAMBytes, info.Estimate = est.RAMBytes, est.VRAMBytes, est.Method
	return info, est, nil
}

// CheckComplete reports [ErrTruncated], with the sizes involved, when the
// file at path ends inside its GGUF header or before the tensor data the
// header describes, and [ErrNotFound] when it is missing. It parses the
// header with gguf-parser-go, as [Inspect] does, but a header the parser
// refuses for any other reason is not reported here: the worker runs this
// check before llama.cpp loads the file, and the parser may lag behind
// llama.cpp (a tensor type newer than itself), so such a file is left to
// the loader's own error.
func CheckComplete(path string) error {
	_, err := parseWhole(path)
	if errors.Is(err, ErrNotGGUF) {
		return nil
	}
	return err
}

// parseWhole parses the GGUF header of the file at path and checks that the
// file holds all the tensor data the header describes. Errors wrap
// [ErrNotFound], [ErrTruncated] (see [parserCut] for how a cut file is told
// from a malformed one) or [ErrNotGGUF].
func parseWhole(path string) (*parser.GGUFFile, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	size := st.Size()
	gf, err := parseGGUF(path)
	if err != nil {
		cut, need, held := parserCut(err)
		// The header ends where the held bytes begin and describes need
		// bytes from there. Numbers that do not fit the file are no cut.
		if start := uint64(size) - held; cut == cutInData && held <= uint64(size) && need <= math.MaxUint64-start {
			return nil, truncatedData(path, uint64(size), start+need)
		}
		if cut == cutInHeader {
			return nil, truncatedHeader(path, size, err)
		}
		return nil, fmt.Errorf("%s: %w: %v", path, ErrNotGGUF, err)
	}
	if len(gf.SplitSizes) != 1 {
		return gf, nil // a split model: the parser read all its shards and sized none of them
	}
	// The parser checks that the sum of the tensor sizes fits after the
	// header. A file cut inside the padding that ends the header, or by less
	// than the padding between its tensors, passes that check: look at where
	// each tensor ends.
	start := gf.TensorDataStartOffset
	if start < 0 || start > int64(gf.Size) {
		return nil, truncatedHeader(path, int64(gf.Size), fmt.Errorf("the tensor data would start at byte %d", start))
	}
	var end uint64 // relative to start
	for _, ti := range gf.TensorInfos {
		n := ti.Bytes() // does not panic: the parser sized every tensor
		if n > math.MaxInt64 || ti.Offset > math.MaxInt64-n {
			return nil, fmt.Errorf("%s: %w: tensor %q ends beyond 2^63 bytes", path, ErrNotGGUF, ti.Name)
		}
		end = max(end, ti.Offset+n)
	}
	if want := uint64(start) + end; want > uint64(gf.Size) {
		return nil, truncatedData(path, uint64(gf.Size), want)
	}
	return gf, nil
}

func truncatedData(path string, size, want uint64) error {
	return fmt.Errorf("%w: %s has %d bytes, its GGUF header describes %d (%d missing): the copy or download was cut short",
		ErrTruncated, path, size, want, want-size)
}

func truncatedHeader(path string, size int64, cause error) error {
	return fmt.Errorf("%w: %s has %d bytes and ends inside its GGUF header (%v): the copy or download was cut short",
		ErrTruncated, path, size, cause)
}

// Where a file that gguf-parser-go refuses was cut, as parserCut reads it.
const (
	notCut      = iota // not recognized as cut short: a malformed header
	cutInHeader        // the file ends inside its header
	cutInData          // the header is whole; the tensor data is short
)

var (
	dataCutRe   = regexp.MustCompile(`tensor data needs (\d+) bytes but only (\d+) follow the header`)
	remainingRe = regexp.MustCompile(`too large for remaining bytes|exceeds \d+ remaining bytes`)
)

// parserCut reads an error of gguf-parser-go's ParseGGUFFile and says
// whether the file was cut short and where. For a cut in the tensor data it
// returns the parser's need (bytes of tensor data the header describes) and
// held (bytes that follow the header).
//
// This depends on the parser's messages, of the version pinned in go.mod:
//
//	tensor data needs X bytes but only Y follow the header: …   (cutInData)
//	read …: EOF / unexpected EOF (wrapped io.EOF, io.ErrUnexpectedEOF)
//	tensor count too large for remaining bytes: N
//	read string: length N exceeds M remaining bytes
//	read array: length N exceeds M remaining bytes                (cutInHeader)
//
// TestInspectTruncated cuts a model at each of these places and fails if an
// upgrade of gguf-parser-go changes them.
func parserCut(err error) (cut int, need, held uint64) {
	msg := err.Error()
	if m := dataCutRe.FindStringSubmatch(msg); m != nil {
		need, err1 := strconv.ParseUint(m[1], 10, 64)
		held, err2 := strconv.ParseUint(m[2], 10, 64)
		if err1 != nil || err2 != nil || need <= held {
			return notCut, 0, 0
		}
		return cutInData, need, held
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || remainingRe.MatchString(msg) {
		return cutInHeader, 0, 0
	}
	return notCut, 0, 0
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

// formulaEstimate is weights + KV cache + a fixed compute buffer, with the KV
// cache at F16: 2 (K and V) × n_layer × ctx × n_embd_kv × 2 bytes, where
// n_embd_kv = n_head_kv × head_dim.
func formulaEstimate(weights uint64, a parser.GGUFArchitecture, ctx uint64) Estimate {
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
	total := satAdd(satAdd(weights, kv), FormulaComputeBytes)
	return Estimate{WeightsBytes: weights, KVBytes: kv, OverheadBytes: FormulaComputeBytes, TotalBytes: total,
		RAMBytes: total, VRAMBytes: total, Method: EstimateFormula}
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
