package detect

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeNvidiaSMI writes a shell script standing in for nvidia-smi and returns
// its path. The script checks that it is asked the expected query.
func fakeNvidiaSMI(t *testing.T, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	path := filepath.Join(t.TempDir(), "nvidia-smi")
	script := "#!/bin/sh\n" +
		`[ "$1" = "` + nvidiaSMIArgs[0] + `" ] && [ "$2" = "` + nvidiaSMIArgs[1] + `" ] || { echo "unexpected args: $*" >&2; exit 2; }` + "\n" +
		body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

const twoGPUs = `cat <<'CSV'
0, NVIDIA H200, 143771, 143000, 570.86.15
1, NVIDIA H200, 143771, 100000, 570.86.15
CSV`

func TestDetectCUDA(t *testing.T) {
	libDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(libDir, CUDALib), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	emptyDir := t.TempDir()
	tests := []struct {
		name    string
		script  string // body of the fake nvidia-smi; "" means a path that does not exist
		libDir  string
		timeout time.Duration
		avail   bool
		devices int
		reason  string // prefix
	}{
		{name: "two GPUs", script: twoGPUs, avail: true, devices: 2},
		{name: "two GPUs with library", script: twoGPUs, libDir: libDir, avail: true, devices: 2},
		{name: "library missing", script: twoGPUs, libDir: emptyDir, devices: 2,
			reason: "llorch CUDA library not found: " + filepath.Join(emptyDir, CUDALib)},
		{name: "exit 1", script: `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." ; exit 1`,
			reason: "nvidia-smi failed: exit status 1: NVIDIA-SMI has failed because it couldn't communicate"},
		{name: "exit 1 with stderr", script: `echo "Failed to initialize NVML: Driver/library version mismatch" >&2; exit 1`,
			reason: "nvidia-smi failed: exit status 1: Failed to initialize NVML: Driver/library version mismatch"},
		{name: "no devices", script: `exit 0`, reason: "no CUDA devices"},
		{name: "garbage output", script: `echo "hello"`, reason: "nvidia-smi failed: line 1: want 5 fields"},
		{name: "hangs", script: `sleep 30`, timeout: 200 * time.Millisecond,
			reason: "nvidia-smi failed: timed out after 200ms"},
		{name: "not found", reason: "nvidia-smi not found: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{NvidiaSMI: filepath.Join(t.TempDir(), "absent"), LibDir: tt.libDir, Timeout: tt.timeout}
			if tt.script != "" {
				o.NvidiaSMI = fakeNvidiaSMI(t, tt.script)
			}
			start := time.Now()
			b := detectCUDA(t.Context(), o)
			if tt.timeout > 0 && time.Since(start) > 5*time.Second {
				t.Errorf("a hung nvidia-smi held Detect for %s", time.Since(start))
			}
			if b.Name != BackendCUDA || b.Available != tt.avail || len(b.Devices) != tt.devices {
				t.Fatalf("got %+v, want available %v with %d devices", b, tt.avail, tt.devices)
			}
			if !strings.HasPrefix(b.Reason, tt.reason) || (tt.reason == "") != (b.Reason == "") {
				t.Errorf("reason = %q, want prefix %q", b.Reason, tt.reason)
			}
		})
	}
}

func TestDetectCUDADevices(t *testing.T) {
	b := detectCUDA(t.Context(), Options{NvidiaSMI: fakeNvidiaSMI(t, twoGPUs)})
	want := []Device{
		{Index: 0, Name: "NVIDIA H200", MemTotalBytes: 143771 * mib, MemFreeBytes: 143000 * mib, Driver: "570.86.15"},
		{Index: 1, Name: "NVIDIA H200", MemTotalBytes: 143771 * mib, MemFreeBytes: 100000 * mib, Driver: "570.86.15"},
	}
	if !slices.Equal(b.Devices, want) {
		t.Errorf("devices = %+v\nwant %+v", b.Devices, want)
	}
}

func TestDetectCUDANotInPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	b := detectCUDA(t.Context(), Options{})
	if b.Available || b.Reason != "nvidia-smi not found" {
		t.Errorf("got %+v, want reason %q", b, "nvidia-smi not found")
	}
}

func TestDetectCUDACancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := detectCUDA(ctx, Options{NvidiaSMI: fakeNvidiaSMI(t, `sleep 30`)})
	if b.Available || !strings.HasPrefix(b.Reason, "nvidia-smi failed: context canceled") {
		t.Errorf("got %+v", b)
	}
}

func TestDetect(t *testing.T) {
	r := Detect(t.Context(), Options{NvidiaSMI: fakeNvidiaSMI(t, twoGPUs)})
	if r.OS != runtime.GOOS || r.Arch != runtime.GOARCH || r.DetectedAt.IsZero() {
		t.Errorf("header = %q %q %v", r.OS, r.Arch, r.DetectedAt)
	}
	var names []string
	for _, b := range r.Backends {
		names = append(names, b.Name)
	}
	if !slices.Equal(names, Names()) {
		t.Errorf("backends = %q, want %q", names, Names())
	}
	c, ok := r.Backend(BackendCPU)
	if !ok || !c.Available || c.CPU == nil {
		t.Fatalf("cpu = %+v", c)
	}
	if c.CPU.LogicalCores < 1 || c.CPU.PhysicalCores < 1 || c.CPU.PhysicalCores > c.CPU.LogicalCores {
		t.Errorf("cores = %d physical %d logical", c.CPU.PhysicalCores, c.CPU.LogicalCores)
	}
	if runtime.GOOS == "linux" {
		if c.CPU.MemTotalBytes == 0 || c.CPU.MemAvailBytes > c.CPU.MemTotalBytes {
			t.Errorf("memory = %d available of %d", c.CPU.MemAvailBytes, c.CPU.MemTotalBytes)
		}
	}
	if runtime.GOARCH == "amd64" && !slices.Contains(c.CPU.Features, "sse3") {
		t.Errorf("amd64 features %q lack sse3", c.CPU.Features)
	}
	want := []string{"cpu", "cuda"}
	if runtime.GOOS == "darwin" && runtime.GOARCH == "arm64" {
		want = append(want, "metal")
	}
	if got := r.Available(); !slices.Equal(got, want) {
		t.Errorf("Available() = %q, want %q", got, want)
	}
	t.Logf("cpu: %+v", *c.CPU)

	// The report is stored and printed as JSON with snake_case keys.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"detected_at"`, `"backends"`, `"physical_cores"`, `"mem_avail_bytes"`, `"mem_total_bytes"`, `"devices"`, `"reason"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s: %s", key, b)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Available(), r.Available()) || len(back.Backends) != 3 {
		t.Errorf("JSON round trip: %+v", back)
	}
}

// Memory reads /proc/meminfo afresh on Linux: the same MemTotal as the file,
// and an available figure no larger than it.
func TestMemory(t *testing.T) {
	total, avail := Memory()
	if runtime.GOOS != "linux" {
		t.Skipf("Memory on %s: total %d avail %d", runtime.GOOS, total, avail)
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	wantTotal, _, err := parseMemInfo(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if total != wantTotal || avail == 0 || avail > total {
		t.Errorf("Memory() = %d, %d; /proc/meminfo MemTotal %d", total, avail, wantTotal)
	}
}

// CUDADevices re-reads the GPUs' memory with one nvidia-smi run.
func TestCUDADevices(t *testing.T) {
	devs, err := CUDADevices(t.Context(), Options{NvidiaSMI: fakeNvidiaSMI(t, twoGPUs)})
	if err != nil || len(devs) != 2 || devs[1].MemFreeBytes != 100000<<20 || devs[0].MemTotalBytes != 143771<<20 {
		t.Fatalf("CUDADevices = %+v, %v", devs, err)
	}
	if _, err := CUDADevices(t.Context(), Options{NvidiaSMI: fakeNvidiaSMI(t, "exit 1")}); err == nil || !strings.Contains(err.Error(), "nvidia-smi failed") {
		t.Errorf("failing nvidia-smi: %v", err)
	}
}
