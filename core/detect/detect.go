package detect

import (
	"context"
	"os"
	"runtime"
	"time"
)

// Backend names, in the fixed order of [Report.Available].
const (
	BackendCPU   = "cpu"
	BackendCUDA  = "cuda"
	BackendMetal = "metal"
)

// Names returns every backend name llorch knows, in a fixed order.
func Names() []string { return []string{BackendCPU, BackendCUDA, BackendMetal} }

// CUDALib is the file that must be in [Options.LibDir] for cuda to be usable.
const CUDALib = "libggml-cuda.so"

// DefaultTimeout bounds each external probe (nvidia-smi) when
// [Options.Timeout] is zero.
const DefaultTimeout = 10 * time.Second

// Options configures [Detect]. The zero value is ready to use.
type Options struct {
	// NvidiaSMI is the nvidia-smi executable: a name looked up in PATH or a
	// path. Empty means "nvidia-smi".
	NvidiaSMI string
	// LibDir, when set, is the directory holding llorch's CUDA library;
	// cuda is unavailable unless CUDALib is there. Empty skips the check.
	LibDir string
	// Timeout bounds each external probe; zero means DefaultTimeout.
	Timeout time.Duration
}

// Report is what [Detect] found on this host.
type Report struct {
	Host       string    `json:"host"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	DetectedAt time.Time `json:"detected_at"`
	Backends   []Backend `json:"backends"`
}

// Backend is one inference backend and whether this host can run it.
type Backend struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	// Reason says why the backend is unavailable; empty when it is available.
	Reason string `json:"reason,omitempty"`
	// CPU is set on the cpu backend.
	CPU *CPU `json:"cpu,omitempty"`
	// Devices lists the GPUs of the cuda backend. They are listed even when
	// cuda is unavailable for another reason (a missing library).
	Devices []Device `json:"devices,omitempty"`
}

// CPU describes the host's processors and memory.
type CPU struct {
	Model         string `json:"model"`
	PhysicalCores int    `json:"physical_cores"`
	LogicalCores  int    `json:"logical_cores"`
	// Features are the SIMD features ggml can use, in a fixed order (see
	// simdFeatures), named as Linux's /proc/cpuinfo names them on x86 and with
	// the usual names (neon, dotprod, fp16, i8mm, sve, sve2, bf16) on arm64.
	Features      []string `json:"features"`
	MemTotalBytes uint64   `json:"mem_total_bytes"`
	MemAvailBytes uint64   `json:"mem_avail_bytes"`
}

// Device is one GPU.
type Device struct {
	Index         int    `json:"index"`
	Name          string `json:"name"`
	MemTotalBytes uint64 `json:"mem_total_bytes"`
	MemFreeBytes  uint64 `json:"mem_free_bytes"`
	// Driver is the NVIDIA driver version.
	Driver string `json:"driver"`
}

// Detect probes every backend and returns the report. It never fails: a probe
// that goes wrong makes its backend unavailable with the reason. Cancelling
// ctx stops external probes early.
func Detect(ctx context.Context, o Options) Report {
	host, _ := os.Hostname()
	return Report{
		Host:       host,
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		DetectedAt: time.Now().UTC(),
		Backends: []Backend{
			detectCPU(),
			detectCUDA(ctx, o),
			detectMetal(runtime.GOOS, runtime.GOARCH),
		},
	}
}

// Available returns the names of the available backends in the fixed order
// cpu, cuda, metal, whatever the order of r.Backends.
func (r Report) Available() []string {
	var names []string
	for _, n := range Names() {
		if b, ok := r.Backend(n); ok && b.Available {
			names = append(names, n)
		}
	}
	return names
}

// Backend returns the backend called name and whether the report has it.
func (r Report) Backend(name string) (Backend, bool) {
	for _, b := range r.Backends {
		if b.Name == name {
			return b, true
		}
	}
	return Backend{}, false
}

// detectMetal decides metal from the platform alone: llorch's metal build
// exists only for darwin/arm64, where every Mac has a Metal GPU.
func detectMetal(goos, goarch string) Backend {
	if goos == "darwin" && goarch == "arm64" {
		return Backend{Name: BackendMetal, Available: true}
	}
	return Backend{Name: BackendMetal, Reason: "metal needs macOS on Apple silicon"}
}
