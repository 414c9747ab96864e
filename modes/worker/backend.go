package worker

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/detect"
)

// backendNames are the backends this build can run: cpu, and cuda (Linux,
// when its library and a GPU are there) or metal (macOS, compiled in).
var backendNames = func() []string {
	if runtime.GOOS == "darwin" {
		return []string{detect.BackendCPU, detect.BackendMetal}
	}
	return []string{detect.BackendCPU, detect.BackendCUDA}
}()

// placement is where the model goes: nil device means the CPU.
type placement struct {
	device *llamacpp.Device
	layers int // layers to offload; -1 all
}

func (p placement) params() llamacpp.LoadParams {
	if p.device == nil {
		return llamacpp.LoadParams{}
	}
	return llamacpp.LoadParams{Device: p.device, GPULayers: p.layers}
}

// backendFlags are the flags worker and worker bench share.
type backendFlags struct {
	backend    string
	gpu        int
	gpuLayers  string
	cpuVariant string
}

// prepareBackend checks --backend before anything else happens and, for cuda,
// loads the CUDA library and picks device gpu. Any failure is the message for
// exit status 1: it names the reason and the backends that are available.
// There is no silent fallback to the CPU.
func prepareBackend(f backendFlags, log *slog.Logger) (placement, error) {
	backend, gpu := f.backend, f.gpu
	layers, err := parseGPULayers(f.gpuLayers)
	if err != nil {
		return placement{}, err
	}
	switch backend {
	case detect.BackendCPU:
		if err := loadCPUVariant(f.cpuVariant, log); err != nil {
			return placement{}, err
		}
		return placement{}, nil
	case detect.BackendMetal:
		if runtime.GOOS != "darwin" {
			break
		}
		devs := llamacpp.GPUDevices()
		if gpu < 0 || gpu >= len(devs) {
			return placement{}, fmt.Errorf("worker: backend \"metal\" is not usable: no Metal device %d (found %d) (available: %s)", gpu, len(devs), detect.BackendCPU)
		}
		return placement{device: devs[gpu], layers: layers}, nil
	case detect.BackendCUDA:
		if runtime.GOOS != "linux" {
			break
		}
		dev, err := cudaDevice(gpu, log)
		if err != nil {
			return placement{}, fmt.Errorf("worker: backend \"cuda\" is not usable: %v (available: %s)", err, detect.BackendCPU)
		}
		return placement{device: dev, layers: layers}, nil
	}
	return placement{}, fmt.Errorf("worker: backend %q is not available in this build (backends: %s)", backend, strings.Join(backendNames, ", "))
}

// cudaDevice loads libggml-cuda.so from $LLORCH_LIB_PATH or
// <dir of llorch>/../lib/llorch and returns CUDA device gpu.
func cudaDevice(gpu int, log *slog.Logger) (*llamacpp.Device, error) {
	exe, _ := os.Executable()
	lib, err := detect.FindLib(detect.CUDALib, detect.LibDirs(os.Getenv("LLORCH_LIB_PATH"), exe))
	if err != nil {
		return nil, fmt.Errorf("%v; build it with `make cuda`", err)
	}
	// --gpu N means nvidia-smi's #N (what `llorch pool backends detect`
	// lists): CUDA numbers devices fastest first unless told otherwise.
	if os.Getenv("CUDA_DEVICE_ORDER") == "" {
		os.Setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
	}
	b, err := llamacpp.LoadBackend(lib)
	if err != nil {
		return nil, err
	}
	if len(b.Devices) == 0 {
		msg := "no CUDA device found by " + lib
		if v, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES"); ok {
			msg += fmt.Sprintf(" (CUDA_VISIBLE_DEVICES=%q)", v)
		}
		return nil, fmt.Errorf("%s; is the NVIDIA driver loaded (nvidia-smi)?", msg)
	}
	if gpu < 0 || gpu >= len(b.Devices) {
		var ds []string
		for _, d := range b.Devices {
			ds = append(ds, fmt.Sprintf("%d: %s", d.Index, d.Description))
		}
		return nil, fmt.Errorf("--gpu %d: no such device (have %s)", gpu, strings.Join(ds, ", "))
	}
	d := b.Devices[gpu]
	log.Info("cuda device", "gpu", gpu, "name", d.Name, "device", d.Description, "pci", d.PCIID, "compute", d.Compute,
		"vram_bytes", d.TotalBytes, "vram_free_bytes", d.FreeBytes, "lib", lib)
	return d, nil
}

// loadCPUVariant handles --cpu-variant. With auto, when the library
// directory holds CPU backend variants (a release's lib/llorch/libggml-cpu-*.so,
// built for AVX-512 and other instruction sets beyond the portable x86-64-v3
// baseline compiled into llorch), it loads the one that suits this CPU best;
// ggml then prefers it to the built-in CPU backend. A variant that cannot be
// loaded is logged and the built-in backend serves. off keeps the built-in
// backend; a name (icelake) demands that variant.
func loadCPUVariant(mode string, log *slog.Logger) error {
	if mode == "" || mode == "off" {
		return nil
	}
	exe, _ := os.Executable()
	var libs []string
	for _, d := range detect.LibDirs(os.Getenv("LLORCH_LIB_PATH"), exe) {
		if m, _ := filepath.Glob(filepath.Join(d, "libggml-cpu-*.so")); len(m) > 0 {
			libs = m
			break
		}
	}
	if mode != "auto" {
		want := "libggml-cpu-" + mode + ".so"
		libs = slices.DeleteFunc(libs, func(p string) bool { return filepath.Base(p) != want })
		if len(libs) == 0 {
			return fmt.Errorf("worker: --cpu-variant %s: no %s in the library directory (set LLORCH_LIB_PATH)", mode, want)
		}
	}
	if len(libs) == 0 {
		return nil
	}
	best, score := llamacpp.BestVariant(libs)
	if best == "" {
		if mode != "auto" {
			return fmt.Errorf("worker: --cpu-variant %s cannot run on this CPU", mode)
		}
		log.Info("no CPU variant suits this CPU; using the built-in CPU backend", "variants", len(libs))
		return nil
	}
	if _, err := llamacpp.LoadBackend(best); err != nil {
		if mode != "auto" {
			return fmt.Errorf("worker: --cpu-variant %s: %w", mode, err)
		}
		log.Warn("CPU variant not loaded; using the built-in CPU backend", "err", err)
		return nil
	}
	log.Info("cpu variant", "lib", best, "score", score)
	return nil
}

// parseGPULayers reads --gpu-layers: "all" (or empty) or a count.
func parseGPULayers(s string) (int, error) {
	if s == "" || s == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("worker: --gpu-layers must be a count or \"all\", got %q", s)
	}
	return n, nil
}
