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
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		c.MemTotalBytes, c.MemAvailBytes, err = parseMemInfo(string(b))
		if err != nil {
			c.MemTotalBytes, c.MemAvailBytes = 0, 0
		}
	}
	if c.MemTotalBytes == 0 {
		var si syscall.Sysinfo_t
		if syscall.Sysinfo(&si) == nil {
			unit := uint64(si.Unit)
			c.MemTotalBytes = uint64(si.Totalram) * unit
			c.MemAvailBytes = uint64(si.Freeram) * unit
		}
	}
	return Backend{Name: BackendCPU, Available: true, CPU: c}
}
