package catalog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"time"

	parser "github.com/gpustack/gguf-parser-go"
)

// MaxBlockCount bounds a header's block_count (n_layer). The largest models
// have a few hundred layers; the estimate walks every layer, so a crafted
// header with a huge count would make it spin. gguf-parser-go bounds its
// per-layer slices at the same figure.
const MaxBlockCount = 4096

// Header reads: the most bytes and the longest time [Downloader.FetchHeader]
// spends on a remote file's header.
const (
	DefaultHeaderLimit   = 64 << 20
	DefaultHeaderTimeout = 60 * time.Second
)

// Estimate is the memory a model needs to run with Ctx tokens per slot ×
// Slots (the KV cache holds ctx × slots tokens). TotalBytes is WeightsBytes
// + KVBytes + OverheadBytes with every layer on the CPU, which is RAMBytes;
// VRAMBytes is the device memory with every layer offloaded to one GPU.
type Estimate struct {
	WeightsBytes  uint64 `json:"weights_bytes"`
	KVBytes       uint64 `json:"kv_bytes"`
	OverheadBytes uint64 `json:"overhead_bytes"` // compute buffers and runtime footprint
	TotalBytes    uint64 `json:"total_bytes"`
	RAMBytes      uint64 `json:"ram_bytes"`
	VRAMBytes     uint64 `json:"vram_bytes"`
	Method        string `json:"method"`     // EstimateParser or EstimateFormula
	SizeBytes     int64  `json:"size_bytes"` // the model file's size
}

// EstimateFile reads the GGUF header of the file at path and estimates the
// memory to run it with ctx tokens per slot (ctx <= 0: the trained context,
// as in [Inspect]) and slots parallel sequences (at least 1). It is the
// estimate [Inspect] reports, for ctx × slots tokens of KV cache. Errors are
// those of Inspect.
func EstimateFile(path string, ctx, slots int) (Estimate, error) {
	_, est, err := inspect(path, ctx, slots)
	return est, err
}

// estimateRun estimates with gguf-parser-go, or with the documented formula
// when the parser panics or has nothing to say. ctx is the total context
// (per slot × slots).
func estimateRun(gf *parser.GGUFFile, arch parser.GGUFArchitecture, ctx, slots int) Estimate {
	if e, ok := parserEstimate(gf, ctx, slots); ok {
		return e
	}
	e := formulaEstimate(uint64(gf.ModelSize), arch, uint64(ctx))
	return e
}

func parserEstimate(gf *parser.GGUFFile, ctx, slots int) (e Estimate, ok bool) {
	defer func() {
		if recover() != nil {
			e, ok = Estimate{}, false
		}
	}()
	opts := []parser.GGUFRunEstimateOption{parser.WithLLaMACppContextSize(int32(min(ctx, math.MaxInt32)))}
	if slots > 1 {
		opts = append(opts, parser.WithParallelSize(int32(min(slots, math.MaxInt32))))
	}
	cpuRun := gf.EstimateLLaMACppRun(append(opts, parser.WithLLaMACppOffloadLayers(0))...)
	cpu := cpuRun.SummarizeItem(false, 0, 0)
	gpu := gf.EstimateLLaMACppRun(opts...).SummarizeItem(true, 0, 0)
	for _, d := range cpuRun.Devices {
		e.WeightsBytes = satAdd(e.WeightsBytes, uint64(d.Weight.Sum()))
		e.KVBytes = satAdd(e.KVBytes, uint64(d.KVCache.Sum()))
		e.OverheadBytes = satAdd(e.OverheadBytes, satAdd(uint64(d.Computation.Sum()), uint64(d.Footprint)))
	}
	e.RAMBytes = uint64(cpu.RAM.NonUMA)
	// On the CPU the weights are the file's tensors, mapped once: the
	// parser counts a tied output layer (no tensor of its own: it reuses
	// token_embd) a second time, which made a qwen2.5 f16 estimate 27% over
	// its file. A GPU run does copy it, so the VRAM side keeps it.
	if ms := uint64(max(gf.ModelSize, 0)); ms > 0 && e.WeightsBytes > ms {
		extra := e.WeightsBytes - ms
		e.WeightsBytes = ms
		if e.RAMBytes > extra {
			e.RAMBytes -= extra
		}
	}
	e.TotalBytes = satAdd(satAdd(e.WeightsBytes, e.KVBytes), e.OverheadBytes)
	for _, v := range gpu.VRAMs {
		e.VRAMBytes = satAdd(e.VRAMBytes, uint64(v.NonUMA))
	}
	e.Method = EstimateParser
	return e, e.RAMBytes > 0 && e.VRAMBytes > 0 && e.WeightsBytes > 0
}

// checkBlockCount refuses a header whose block_count is past MaxBlockCount.
func checkBlockCount(arch parser.GGUFArchitecture) error {
	if arch.BlockCount > MaxBlockCount {
		return fmt.Errorf("block_count %d is past the limit of %d layers", arch.BlockCount, MaxBlockCount)
	}
	return nil
}

// EstimateRemote estimates the memory to run the remote model r (an hf: or
// https reference) as [EstimateFile] does, reading only the start of the
// file: one HTTP range request of at most DefaultHeaderLimit bytes within
// DefaultHeaderTimeout, with HF_ENDPOINT and HF_TOKEN as for
// [Downloader.Download]. The bytes go to a sparse temporary file in dir ("":
// the system's) of the remote file's full size, removed before it returns.
// A header longer than the bytes read wraps [ErrNotGGUF] and says so.
func (d *Downloader) EstimateRemote(ctx context.Context, r Ref, dir string, nctx, slots int) (Estimate, error) {
	f, err := os.CreateTemp(dir, "header-*.gguf")
	if err != nil {
		return Estimate{}, fmt.Errorf("estimate: %w", err)
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	_, read, err := d.fetchHeader(ctx, r, path, DefaultHeaderLimit)
	if err != nil {
		return Estimate{}, fmt.Errorf("estimate: %w", err)
	}
	_, est, err := inspectWithin(path, nctx, slots, read)
	if err != nil {
		return Estimate{}, fmt.Errorf("estimate %s: %w", r.redacted(), err)
	}
	return est, nil
}

// fetchHeader writes the first min(limit, size) bytes of r to dest, then
// extends dest to the remote size (the rest reads as zeros and takes no
// disk). It returns the remote size and the bytes read.
func (d *Downloader) fetchHeader(ctx context.Context, r Ref, dest string, limit int64) (size, read int64, err error) {
	pr, err := ParseRef(r.String())
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header: %w", err)
	}
	r = pr
	if r.Kind == KindFile {
		return 0, 0, fmt.Errorf("fetch header %s: a local file needs no fetch", r)
	}
	if limit <= 0 {
		limit = DefaultHeaderLimit
	}
	name := r.redacted()
	ep, err := d.endpoint()
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	t := &transfer{d: d, ref: r, ep: ep}
	t.setSource()
	ctx, cancel := context.WithTimeout(ctx, DefaultHeaderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.src, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	t.setHeaders(req)
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", limit-1))
	resp, err := d.client().Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != 0 || total < 0 {
			return 0, 0, fmt.Errorf("fetch header %s: bad Content-Range %q", name, resp.Header.Get("Content-Range"))
		}
		size = total
	case http.StatusOK:
		if resp.ContentLength < 0 {
			return 0, 0, fmt.Errorf("fetch header %s: the server ignores Range and gives no Content-Length", name)
		}
		size = resp.ContentLength
	default:
		var re retryable
		if err := t.statusErr(resp); errors.As(err, &re) {
			return 0, 0, fmt.Errorf("fetch header %s: %w", name, re.err)
		} else {
			return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
		}
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	defer f.Close()
	read, err = io.Copy(f, io.LimitReader(resp.Body, min(limit, size)))
	if err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	if read < min(limit, size) {
		return 0, 0, fmt.Errorf("fetch header %s: %w: got %d bytes of %d", name, io.ErrUnexpectedEOF, read, min(limit, size))
	}
	if err := f.Truncate(size); err != nil {
		return 0, 0, fmt.Errorf("fetch header %s: %w", name, err)
	}
	return size, read, f.Close()
}
