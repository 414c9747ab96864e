package detect

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// detectCPU reads sysctl. macOS offers no cheap "available memory" figure, so
// MemAvailBytes stays 0 (unknown).
func detectCPU() Backend {
	c := &CPU{Features: featuresFromRuntime()}
	c.Model, _ = unix.Sysctl("machdep.cpu.brand_string")
	if n, err := unix.SysctlUint32("hw.logicalcpu"); err == nil {
		c.LogicalCores = int(n)
	} else {
		c.LogicalCores = runtime.NumCPU()
	}
	if n, err := unix.SysctlUint32("hw.physicalcpu"); err == nil {
		c.PhysicalCores = int(n)
	} else {
		c.PhysicalCores = c.LogicalCores
	}
	c.MemTotalBytes, c.MemAvailBytes = memory()
	return Backend{Name: BackendCPU, Available: true, CPU: c}
}

// memory is hw.memsize; macOS gives no cheap available figure (0).
func memory() (total, avail uint64) {
	total, _ = unix.SysctlUint64("hw.memsize")
	return total, 0
}
