// Package detect finds out which inference backends this host can run.
//
// [Detect] probes three backends and returns a [Report]:
//
//   - cpu is always available. Its [CPU] record holds the model name, physical
//     and logical core counts, the SIMD features that matter to ggml, and the
//     total and available RAM. On Linux these come from /proc/cpuinfo and
//     /proc/meminfo, with golang.org/x/sys/cpu as the fallback for features; on
//     macOS from sysctl; elsewhere from the Go runtime.
//   - cuda runs nvidia-smi (its path is configurable) and lists the devices
//     with their memory and driver version. It is unavailable when nvidia-smi is
//     missing or fails, when it lists no device, or, with [Options.LibDir] set,
//     when the llorch CUDA library (libggml-cuda.so) is not in that directory.
//   - metal is available on macOS on Apple silicon only.
//
// Every unavailable backend carries a reason a person can read. The parsers
// (/proc/cpuinfo, /proc/meminfo, nvidia-smi CSV) are pure functions of their
// input, so they are table-tested with fixtures and fuzzed.
//
// The report is plain data with snake_case JSON tags; the pool stores it and
// prints it with --json.
package detect
