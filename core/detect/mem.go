package detect

import (
	"context"
	"errors"
)

// Memory returns the host's total and available memory in bytes, read now
// and cheaply (one small file or sysctl): on Linux MemTotal and MemAvailable
// from /proc/meminfo, on macOS hw.memsize and 0 for available (unknown),
// elsewhere 0 and 0.
func Memory() (total, avail uint64) { return memory() }

// CUDADevices runs nvidia-smi once (bounded by o.Timeout) and returns the
// GPUs with their current memory, to refresh a recorded report's free VRAM
// without a whole detection.
func CUDADevices(ctx context.Context, o Options) ([]Device, error) {
	out, reason := runNvidiaSMI(ctx, o)
	if reason != "" {
		return nil, errors.New("detect: " + reason)
	}
	return parseNvidiaSMI(out)
}
