package llamacpp

/*
// Export ggml's symbols (and everything else) from the executable, so that a
// backend module loaded at run time (libggml-cuda.so, built by `make cuda`
// without ggml-base) binds its ggml calls to the one ggml compiled in here.
#cgo linux LDFLAGS: -rdynamic
#include <stdlib.h>
#include "helpers.h"
#include "loader.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// ErrBackendLib is returned when a backend library cannot be loaded.
var ErrBackendLib = errors.New("llamacpp: cannot load backend library")

// Backend is a ggml backend library loaded into this process: its devices
// were added to ggml's registry, which llama.cpp consults when it loads a
// model.
type Backend struct {
	// Name is the registry's name for it: CUDA, BLAS, ...
	Name string
	// Path is the library file.
	Path string
	// Devices are the backend's devices, in its order (CUDA: the CUDA
	// ordinal, which follows $CUDA_DEVICE_ORDER and $CUDA_VISIBLE_DEVICES).
	Devices []*Device
}

// Device is one device of a loaded backend.
type Device struct {
	// Index is the device's position in Backend.Devices (what --gpu names).
	Index int
	// Name is ggml's name (CUDA0); Description the product (NVIDIA H200).
	Name        string
	Description string
	// PCIID is the PCI bus id ("0000:01:00.0") when the backend knows it.
	PCIID string
	// Compute is the compute capability ("9.0") when the backend reports it.
	Compute string
	// FreeBytes and TotalBytes are the device memory when the backend loaded.
	FreeBytes  uint64
	TotalBytes uint64

	dev C.ggml_backend_dev_t
}

// String is a one-line description: "CUDA0 NVIDIA H200 (139.8 GiB)".
func (d *Device) String() string {
	return fmt.Sprintf("%s %s (%.1f GiB)", d.Name, d.Description, float64(d.TotalBytes)/(1<<30))
}

// Memory reports the device's free and total memory now.
func (d *Device) Memory() (free, total uint64) {
	var f, t C.size_t
	C.ggml_backend_dev_memory(d.dev, &f, &t)
	return uint64(f), uint64(t)
}

var (
	loadMu sync.Mutex
	loaded = map[string]*Backend{}
)

// LoadBackend loads the ggml backend module at path (libggml-cuda.so) into
// ggml's registry, once per path and process. The module must have been
// built against this binary's ggml (scripts/build-backend.sh): one that
// carries its own ggml is refused, so the process keeps exactly one ggml and
// one registry. Errors wrap ErrBackendLib and say why (the dynamic linker's
// message, such as a missing libcudart or NVIDIA driver).
func LoadBackend(path string) (*Backend, error) {
	backendInit() // ggml's log goes to SetLogger's logger from here on
	loadMu.Lock()
	defer loadMu.Unlock()
	if b, ok := loaded[path]; ok {
		return b, nil
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [1024]C.char
	reg := C.llorch_backend_load(cpath, &msg[0], C.size_t(len(msg)))
	if reg == nil {
		return nil, fmt.Errorf("%w %s: %s", ErrBackendLib, path, hint(C.GoString(&msg[0])))
	}
	b := &Backend{Name: C.GoString(C.ggml_backend_reg_name(reg)), Path: path}
	for i := range int(C.ggml_backend_reg_dev_count(reg)) {
		b.Devices = append(b.Devices, newDevice(i, C.ggml_backend_reg_dev_get(reg, C.size_t(i))))
	}
	loaded[path] = b
	return b, nil
}

func newDevice(i int, dev C.ggml_backend_dev_t) *Device {
	var p C.struct_ggml_backend_dev_props
	C.ggml_backend_dev_get_props(dev, &p)
	d := &Device{Index: i, Name: goString(p.name), Description: goString(p.description), PCIID: goString(p.device_id),
		FreeBytes: uint64(p.memory_free), TotalBytes: uint64(p.memory_total), dev: dev}
	if p.compute_major > 0 {
		d.Compute = fmt.Sprintf("%d.%d", p.compute_major, p.compute_minor)
	}
	return d
}

// GPUDevices lists the GPU devices in ggml's registry, in its order: Metal's
// on macOS (compiled in), and those of libraries LoadBackend added.
func GPUDevices() []*Device {
	backendInit()
	loadMu.Lock()
	defer loadMu.Unlock()
	var out []*Device
	for i := range int(C.ggml_backend_dev_count()) {
		dev := C.ggml_backend_dev_get(C.size_t(i))
		if t := C.ggml_backend_dev_type(dev); t == C.GGML_BACKEND_DEVICE_TYPE_GPU || t == C.GGML_BACKEND_DEVICE_TYPE_IGPU {
			out = append(out, newDevice(len(out), dev))
		}
	}
	return out
}

func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

// hint adds what to do to the dynamic linker's usual complaints.
func hint(msg string) string {
	switch {
	case strings.Contains(msg, "libcuda.so"):
		return msg + " (the NVIDIA driver is not installed, or not visible in this container)"
	case strings.Contains(msg, "libcudart.so"), strings.Contains(msg, "libcublas"):
		return msg + " (install the CUDA runtime and cuBLAS, or copy libcudart/libcublas/libcublasLt next to the library)"
	case strings.Contains(msg, "undefined symbol: ggml_"), strings.Contains(msg, "undefined symbol: gguf_"):
		return msg + " (this llorch does not export the ggml the library was built against: build both from the same sources, `make build cuda`)"
	}
	return msg
}

// BestVariant returns the one of paths (backend modules of one kind, such as
// the CPU variants libggml-cpu-haswell.so, libggml-cpu-icelake.so) that suits
// this machine best, by the modules' own ggml_backend_score, and its score;
// "" and 0 when none can run here.
func BestVariant(paths []string) (best string, score int) {
	for _, p := range paths {
		cp := C.CString(p)
		s := int(C.llorch_backend_score(cp))
		C.free(unsafe.Pointer(cp))
		if s > score {
			best, score = p, s
		}
	}
	return best, score
}

// RegistryEntry is one backend in ggml's registry.
type RegistryEntry struct {
	Name    string
	Devices int
}

// Registry lists ggml's backend registry: the CPU backend compiled in, then
// every library LoadBackend added. There is one registry per process.
func Registry() []RegistryEntry {
	backendInit()
	loadMu.Lock()
	defer loadMu.Unlock()
	var out []RegistryEntry
	for i := range int(C.ggml_backend_reg_count()) {
		reg := C.ggml_backend_reg_get(C.size_t(i))
		out = append(out, RegistryEntry{Name: C.GoString(C.ggml_backend_reg_name(reg)), Devices: int(C.ggml_backend_reg_dev_count(reg))})
	}
	return out
}

// loadModel is llama_model_load_from_file with p's placement: on p.Device
// when set, else llama.cpp's default (CPU, or every GPU device registered).
func loadModel(cpath *C.char, ngl int, p LoadParams, h uintptr) *C.struct_llama_model {
	if p.Device == nil {
		return C.llorch_load(cpath, C.int(ngl), C.int(p.MainGPU), C.bool(!p.NoMmap), C.uintptr_t(h))
	}
	return C.llorch_load_dev(cpath, C.int(ngl), C.bool(!p.NoMmap), C.uintptr_t(h), p.Device.dev)
}

// Device reports the device the model's layers were loaded onto: its
// description and total memory; empty and 0 on CPU. It makes no call into
// the backend, so a health handler may call it at any time.
func (m *Model) Device() (name string, vramBytes uint64) {
	if m.dev == nil {
		return "", 0
	}
	return m.dev.Description, m.dev.TotalBytes
}
