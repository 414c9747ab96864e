package detect

import (
	"errors"
	"slices"
	"testing"
)

const cpuinfoX86 = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
physical id	: 0
core id		: 0
flags		: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor	: 1
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
physical id	: 0
core id		: 1
flags		: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor	: 2
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
physical id	: 0
core id		: 0
flags		: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor	: 3
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
physical id	: 0
core id		: 1
flags		: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor	: 4
model name	: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
physical id	: 1
core id		: 0
flags		: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni
`

const cpuinfoARM64 = `processor	: 0
BogoMIPS	: 2000.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve i8mm bf16 sve2
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd4f
CPU revision	: 0

processor	: 1
BogoMIPS	: 2000.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp sve i8mm bf16 sve2
CPU implementer	: 0x41
CPU part	: 0xd4f
`

const cpuinfoARM32 = `Processor	: ARMv7 Processor rev 4 (v7l)
processor	: 0
Features	: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt
processor	: 1
Features	: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt
Hardware	: BCM2835
`

func TestParseCPUInfo(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		model         string
		logical, phys int
		features      []string
	}{
		{"x86 hyperthreads two sockets", cpuinfoX86, "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", 5, 3,
			[]string{"sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"}},
		{"arm64 server", cpuinfoARM64, "ARM implementer 0x41 part 0xd4f", 2, 2,
			[]string{"neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2"}},
		{"arm32 board", cpuinfoARM32, "ARMv7 Processor rev 4 (v7l)", 2, 2, []string{"neon"}},
		{"empty", "", "", 0, 0, []string{}},
		{"garbage", "no colon here\n:::\n\n", "", 0, 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCPUInfo(tt.in)
			if got.Model != tt.model {
				t.Errorf("model = %q, want %q", got.Model, tt.model)
			}
			if got.LogicalCores != tt.logical || got.PhysicalCores != tt.phys {
				t.Errorf("cores = %d logical %d physical, want %d %d", got.LogicalCores, got.PhysicalCores, tt.logical, tt.phys)
			}
			if f := featuresFromFlags(got.Flags); !slices.Equal(f, tt.features) {
				t.Errorf("features = %q, want %q", f, tt.features)
			}
		})
	}
}

func TestParseMemInfo(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		total, avail uint64
		err          bool
	}{
		{"modern", "MemTotal:       16318460 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       0\n",
			16318460 * 1024, 8000000 * 1024, false},
		{"old kernel without MemAvailable", "MemTotal: 2048 kB\nMemFree: 1024 kB\n", 2048 * 1024, 1024 * 1024, false},
		{"no MemTotal", "MemFree: 1024 kB\n", 0, 0, true},
		{"bad number", "MemTotal: lots kB\n", 0, 0, true},
		{"bad unit", "MemTotal: 1 MB\n", 0, 0, true},
		{"overflow", "MemTotal: 18446744073709551615 kB\n", 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, avail, err := parseMemInfo(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if total != tt.total || avail != tt.avail {
				t.Errorf("got total %d avail %d, want %d %d", total, avail, tt.total, tt.avail)
			}
		})
	}
	if _, _, err := parseMemInfo(""); !errors.Is(err, errNoMemTotal) {
		t.Errorf("empty meminfo: err = %v, want errNoMemTotal", err)
	}
}

const mib = 1 << 20

func TestParseNvidiaSMI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Device
		err  bool
	}{
		{"two GPUs", "0, NVIDIA H100 80GB HBM3, 81559, 81000, 550.54.15\n1, NVIDIA H100 80GB HBM3, 81559, 1024, 550.54.15\n",
			[]Device{
				{Index: 0, Name: "NVIDIA H100 80GB HBM3", MemTotalBytes: 81559 * mib, MemFreeBytes: 81000 * mib, Driver: "550.54.15"},
				{Index: 1, Name: "NVIDIA H100 80GB HBM3", MemTotalBytes: 81559 * mib, MemFreeBytes: 1024 * mib, Driver: "550.54.15"},
			}, false},
		{"CRLF and blank lines", "\r\n0, Tesla T4, 15360, 15000, 535.104.05\r\n\r\n",
			[]Device{{Index: 0, Name: "Tesla T4", MemTotalBytes: 15360 * mib, MemFreeBytes: 15000 * mib, Driver: "535.104.05"}}, false},
		{"memory not reported", "0, NVIDIA GB10, [N/A], [Not Supported], 580.95.05\n",
			[]Device{{Index: 0, Name: "NVIDIA GB10", Driver: "580.95.05"}}, false},
		{"comma in name", "3, Weird, Name, 100, 50, 1.0\n",
			[]Device{{Index: 3, Name: "Weird,Name", MemTotalBytes: 100 * mib, MemFreeBytes: 50 * mib, Driver: "1.0"}}, false},
		{"empty", "", nil, false},
		{"too few fields", "0, Tesla T4, 15360\n", nil, true},
		{"bad index", "zero, Tesla T4, 15360, 15000, 535\n", nil, true},
		{"negative index", "-1, Tesla T4, 15360, 15000, 535\n", nil, true},
		{"bad memory", "0, Tesla T4, 15GiB, 15000, 535\n", nil, true},
		{"memory overflow", "0, Tesla T4, 18446744073709551615, 0, 535\n", nil, true},
		{"driver error text", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNvidiaSMI(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDetectMetal(t *testing.T) {
	tests := []struct {
		goos, goarch string
		ok           bool
	}{
		{"darwin", "arm64", true},
		{"darwin", "amd64", false},
		{"linux", "arm64", false},
		{"linux", "amd64", false},
	}
	for _, tt := range tests {
		t.Run(tt.goos+"/"+tt.goarch, func(t *testing.T) {
			b := detectMetal(tt.goos, tt.goarch)
			if b.Name != BackendMetal || b.Available != tt.ok {
				t.Fatalf("got %+v, want available %v", b, tt.ok)
			}
			if !tt.ok && b.Reason != "metal needs macOS on Apple silicon" {
				t.Errorf("reason = %q", b.Reason)
			}
		})
	}
}

func TestReportLookups(t *testing.T) {
	r := Report{Backends: []Backend{
		{Name: BackendMetal, Available: true},
		{Name: BackendCUDA, Reason: "no CUDA devices"},
		{Name: BackendCPU, Available: true},
	}}
	if got, want := r.Available(), []string{"cpu", "metal"}; !slices.Equal(got, want) {
		t.Errorf("Available() = %q, want %q", got, want)
	}
	if b, ok := r.Backend("cuda"); !ok || b.Reason != "no CUDA devices" {
		t.Errorf("Backend(cuda) = %+v, %v", b, ok)
	}
	if _, ok := r.Backend("rocm"); ok {
		t.Error("Backend(rocm) found")
	}
	if got := (Report{}).Available(); got != nil {
		t.Errorf("empty report Available() = %q", got)
	}
}
