package detect

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/cpu"
)

// simdFeature is one SIMD feature ggml can use: its name in the report, the
// /proc/cpuinfo flags that announce it, and the golang.org/x/sys/cpu field that
// does when /proc/cpuinfo cannot be read (nil when x/sys/cpu has none).
type simdFeature struct {
	name    string
	flags   []string
	runtime func() bool
}

// simdFeatures is the fixed order of CPU.Features.
var simdFeatures = []simdFeature{
	// x86: the names /proc/cpuinfo uses (except sse3, which it calls pni).
	{"sse3", []string{"pni", "sse3"}, func() bool { return cpu.X86.HasSSE3 }},
	{"ssse3", []string{"ssse3"}, func() bool { return cpu.X86.HasSSSE3 }},
	{"sse4_1", []string{"sse4_1"}, func() bool { return cpu.X86.HasSSE41 }},
	{"sse4_2", []string{"sse4_2"}, func() bool { return cpu.X86.HasSSE42 }},
	{"avx", []string{"avx"}, func() bool { return cpu.X86.HasAVX }},
	{"avx2", []string{"avx2"}, func() bool { return cpu.X86.HasAVX2 }},
	{"fma", []string{"fma"}, func() bool { return cpu.X86.HasFMA }},
	{"f16c", []string{"f16c"}, func() bool { return cpu.X86.HasF16C }},
	{"avx_vnni", []string{"avx_vnni"}, func() bool { return cpu.X86.HasAVXVNNI }},
	{"avx512f", []string{"avx512f"}, func() bool { return cpu.X86.HasAVX512F }},
	{"avx512bw", []string{"avx512bw"}, func() bool { return cpu.X86.HasAVX512BW }},
	{"avx512dq", []string{"avx512dq"}, func() bool { return cpu.X86.HasAVX512DQ }},
	{"avx512vl", []string{"avx512vl"}, func() bool { return cpu.X86.HasAVX512VL }},
	{"avx512vbmi", []string{"avx512vbmi"}, func() bool { return cpu.X86.HasAVX512VBMI }},
	{"avx512_vnni", []string{"avx512_vnni"}, func() bool { return cpu.X86.HasAVX512VNNI }},
	{"avx512_bf16", []string{"avx512_bf16"}, func() bool { return cpu.X86.HasAVX512BF16 }},
	{"avx512_fp16", []string{"avx512_fp16"}, nil},
	{"amx_tile", []string{"amx_tile"}, func() bool { return cpu.X86.HasAMXTile }},
	{"amx_int8", []string{"amx_int8"}, func() bool { return cpu.X86.HasAMXInt8 }},
	{"amx_bf16", []string{"amx_bf16"}, func() bool { return cpu.X86.HasAMXBF16 }},
	// arm: /proc/cpuinfo "Features" names mapped to the usual ones.
	{"neon", []string{"asimd", "neon"}, func() bool { return cpu.ARM64.HasASIMD || cpu.ARM.HasNEON }},
	{"fp16", []string{"asimdhp"}, func() bool { return cpu.ARM64.HasASIMDHP }},
	{"dotprod", []string{"asimddp"}, func() bool { return cpu.ARM64.HasASIMDDP }},
	{"i8mm", []string{"i8mm"}, func() bool { return cpu.ARM64.HasI8MM }},
	{"bf16", []string{"bf16"}, nil},
	{"sve", []string{"sve"}, func() bool { return cpu.ARM64.HasSVE }},
	{"sve2", []string{"sve2"}, func() bool { return cpu.ARM64.HasSVE2 }},
}

// featuresFromFlags maps raw /proc/cpuinfo flags to CPU.Features.
func featuresFromFlags(flags []string) []string {
	feats := []string{}
	for _, f := range simdFeatures {
		if slices.ContainsFunc(f.flags, func(s string) bool { return slices.Contains(flags, s) }) {
			feats = append(feats, f.name)
		}
	}
	return feats
}

// featuresFromRuntime reads CPU.Features from golang.org/x/sys/cpu.
func featuresFromRuntime() []string {
	feats := []string{}
	for _, f := range simdFeatures {
		if f.runtime != nil && f.runtime() {
			feats = append(feats, f.name)
		}
	}
	return feats
}

// cpuInfo is what parseCPUInfo finds in /proc/cpuinfo.
type cpuInfo struct {
	Model         string
	LogicalCores  int      // "processor" entries
	PhysicalCores int      // distinct (physical id, core id); LogicalCores when absent
	Flags         []string // raw flags ("flags" on x86, "Features" on arm) of the first processor
}

// parseCPUInfo reads the text of /proc/cpuinfo. It accepts the x86 and arm
// layouts and never fails: what it cannot find stays zero.
func parseCPUInfo(s string) cpuInfo {
	var (
		info           cpuInfo
		flagsSeen      bool
		physID, coreID string
		cores          = map[[2]string]bool{}
		implementer    string
		part           string
		fallbackModel  string
	)
	endBlock := func() {
		if physID != "" && coreID != "" {
			cores[[2]string{physID, coreID}] = true
		}
		physID, coreID = "", ""
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			endBlock()
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "processor":
			// A new processor without a blank line before it still starts a block.
			endBlock()
			info.LogicalCores++
		case "model name":
			if info.Model == "" {
				info.Model = val
			}
		case "Processor", "Hardware", "cpu model", "cpu":
			// arm32 / older arm64 kernels, MIPS, POWER.
			if fallbackModel == "" {
				fallbackModel = val
			}
		case "CPU implementer":
			if implementer == "" {
				implementer = val
			}
		case "CPU part":
			if part == "" {
				part = val
			}
		case "physical id":
			physID = val
		case "core id":
			coreID = val
		case "flags", "Features":
			if !flagsSeen {
				info.Flags = strings.Fields(val)
				flagsSeen = true
			}
		}
	}
	endBlock()
	if info.Model == "" {
		switch {
		case fallbackModel != "":
			info.Model = fallbackModel
		case implementer != "":
			info.Model = "ARM implementer " + implementer + " part " + part
		}
	}
	info.PhysicalCores = len(cores)
	if info.PhysicalCores == 0 || info.PhysicalCores > info.LogicalCores {
		info.PhysicalCores = info.LogicalCores
	}
	return info
}

// errNoMemTotal is returned by parseMemInfo when MemTotal is missing.
var errNoMemTotal = errors.New("detect: meminfo: no MemTotal")

// parseMemInfo reads the text of /proc/meminfo and returns the total and the
// available memory in bytes. Available is MemAvailable, or MemFree on kernels
// older than 3.14 that lack it.
func parseMemInfo(s string) (total, avail uint64, err error) {
	var haveTotal, haveAvail bool
	var free uint64
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch key {
		case "MemTotal", "MemAvailable", "MemFree":
		default:
			continue
		}
		n, err := parseKB(val)
		if err != nil {
			return 0, 0, fmt.Errorf("detect: meminfo %s: %w", key, err)
		}
		switch key {
		case "MemTotal":
			total, haveTotal = n, true
		case "MemAvailable":
			avail, haveAvail = n, true
		case "MemFree":
			free = n
		}
	}
	if !haveTotal {
		return 0, 0, errNoMemTotal
	}
	if !haveAvail {
		avail = free
	}
	return total, avail, nil
}

// parseKB parses a meminfo value such as "16318460 kB" into bytes.
func parseKB(v string) (uint64, error) {
	f := strings.Fields(v)
	if len(f) == 0 || len(f) > 2 {
		return 0, fmt.Errorf("malformed value %q", v)
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, err
	}
	if len(f) == 1 {
		return n, nil // a count of pages or bytes: no unit
	}
	if f[1] != "kB" {
		return 0, fmt.Errorf("unknown unit %q", f[1])
	}
	if n > math.MaxUint64/1024 {
		return 0, fmt.Errorf("value %q overflows", v)
	}
	return n * 1024, nil
}
