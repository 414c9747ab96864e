package catalog

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/gguf"
)

func TestEstimateFile(t *testing.T) {
	p := writeTiny(t)
	one, err := EstimateFile(p, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if one.Method != EstimateParser || one.WeightsBytes == 0 || one.KVBytes == 0 || one.OverheadBytes == 0 ||
		one.TotalBytes != one.WeightsBytes+one.KVBytes+one.OverheadBytes || one.RAMBytes == 0 || one.VRAMBytes == 0 ||
		one.SizeBytes != int64(len(tinyGGUF())) {
		t.Fatalf("EstimateFile(ctx 256, 1 slot) = %+v", one)
	}
	// Inspect reports the same estimate for one slot.
	info, err := Inspect(p, 256)
	if err != nil {
		t.Fatal(err)
	}
	if info.EstRAMBytes != one.RAMBytes || info.EstVRAMBytes != one.VRAMBytes || info.Estimate != one.Method {
		t.Errorf("Inspect %+v differs from EstimateFile %+v", info, one)
	}
	// The KV cache holds ctx × slots tokens: 4 slots of 256 is one of 1024.
	four, err := EstimateFile(p, 256, 4)
	if err != nil {
		t.Fatal(err)
	}
	wide, err := EstimateFile(p, 1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if four.KVBytes != 4*one.KVBytes || four.KVBytes != wide.KVBytes || four.WeightsBytes != one.WeightsBytes {
		t.Errorf("KV for 4 slots %d, 1 slot %d, ctx 1024 %d; weights %d vs %d", four.KVBytes, one.KVBytes, wide.KVBytes, four.WeightsBytes, one.WeightsBytes)
	}
}

// A crafted header with a huge block_count is refused at once, with the
// limit (the estimate walks every layer).
func TestEstimateHugeBlockCount(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.gguf")
	writeGGUF(t, p, []gguf.KV{
		{Key: gguf.KeyArchitecture, Value: "llama"},
		{Key: "llama.block_count", Value: uint64(1) << 40},
		{Key: "llama.context_length", Value: uint32(4096)},
		{Key: "llama.embedding_length", Value: uint32(64)},
		{Key: "llama.attention.head_count", Value: uint32(4)},
	}, []gguf.TensorInfo{{Name: "token_embd.weight", Dims: []int64{4, 4}, Type: gguf.GGMLTypeF32}})
	done := make(chan error, 1)
	go func() { _, err := EstimateFile(p, 4096, 4); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotGGUF) || !strings.Contains(err.Error(), "block_count 1099511627776 is past the limit of 4096") {
			t.Errorf("EstimateFile = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("EstimateFile of a header with block_count 2^40 still running after 30s")
	}
	if _, err := Inspect(p, 0); !errors.Is(err, ErrNotGGUF) {
		t.Errorf("Inspect = %v", err)
	}
}

// EstimateRemote reads the header with one range request and estimates as
// EstimateFile does; the hub's token goes to the hub.
func TestEstimateRemote(t *testing.T) {
	data := tinyGGUF()
	local, err := EstimateFile(writeTiny(t), 512, 2)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []string
	ignoreRange := false
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/org/repo/resolve/main/tiny.gguf" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		ranges = append(ranges, r.Header.Get("Range"))
		if ignoreRange {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
			return
		}
		http.ServeContent(w, r, "tiny.gguf", time.Time{}, bytes.NewReader(data))
	}))
	defer hub.Close()
	d := &Downloader{Endpoint: hub.URL, Token: "secret"}
	ref, err := ParseRef("hf:org/repo/tiny.gguf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, ignore := range []bool{false, true} {
		ignoreRange = ignore
		got, err := d.EstimateRemote(t.Context(), ref, dir, 512, 2)
		if err != nil {
			t.Fatalf("ignore range %v: %v", ignore, err)
		}
		if got != local {
			t.Errorf("ignore range %v: remote %+v, local %+v", ignore, got, local)
		}
	}
	if len(ranges) != 2 || ranges[0] != "bytes=0-"+strconv.Itoa(DefaultHeaderLimit-1) {
		t.Errorf("requests with Range %q", ranges)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in the temp dir: %v", left)
	}
	// A header longer than what was read is refused, not parsed from zeros.
	p := filepath.Join(dir, "cut.gguf")
	_, read, err := d.fetchHeader(t.Context(), ref, p, 200)
	if err != nil || read != 200 {
		t.Fatalf("fetchHeader 200 bytes: %d, %v", read, err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("sparse file: %v %v", st, err)
	}
	if _, _, err := inspectWithin(p, 512, 1, read); err == nil {
		t.Error("a header past the bytes read was accepted")
	}
	ref404, _ := ParseRef("hf:org/repo/missing.gguf")
	if _, err := d.EstimateRemote(t.Context(), ref404, dir, 512, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	// No token: the hub's 401 says what to do.
	if _, err := (&Downloader{Endpoint: hub.URL}).EstimateRemote(t.Context(), ref, dir, 512, 1); !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("without a token: %v", err)
	}
}
