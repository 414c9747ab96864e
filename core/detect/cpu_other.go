//go:build !linux && !darwin

package detect

import "runtime"

// detectCPU knows only what the Go runtime knows: the model and the memory
// stay unknown and physical cores are reported as logical ones.
func detectCPU() Backend {
	n := runtime.NumCPU()
	return Backend{Name: BackendCPU, Available: true, CPU: &CPU{
		PhysicalCores: n,
		LogicalCores:  n,
		Features:      featuresFromRuntime(),
	}}
}

// memory is unknown here.
func memory() (total, avail uint64) { return 0, 0 }
