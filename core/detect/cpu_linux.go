package detect

import (
	"os"
	"runtime"
	"syscall"
)

func detectCPU() Backend {
	c := &CPU{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		info := parseCPUInfo(string(b))
		c.Model = info.Model
		c.LogicalCores, c.PhysicalCores = info.LogicalCores, info.PhysicalCores
		if len(info.Flags) > 0 {
			c.Features = featuresFromFlags(info.Flags)
		}
	}
	if c.LogicalCores == 0 {
		c.LogicalCores = runtime.NumCPU()
		c.PhysicalCores = c.LogicalCores
	}
	if c.Features == nil {
		c.Features = featuresFromRuntime()
	}
	c.MemTotalBytes, c.MemAvailBytes = memory()
	return Backend{Name: BackendCPU, Available: true, CPU: c}
}

// memory reads MemTotal and MemAvailable from /proc/meminfo, else sysinfo(2)
// (total and free RAM).
func memory() (total, avail uint64) {
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if total, avail, err = parseMemInfo(string(b)); err == nil {
			return total, avail
		}
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		unit := uint64(si.Unit)
		return uint64(si.Totalram) * unit, uint64(si.Freeram) * unit
	}
	return 0, 0
}
