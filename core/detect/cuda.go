package detect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// nvidiaSMIArgs asks nvidia-smi for one CSV line per GPU, memory in MiB.
var nvidiaSMIArgs = []string{
	"--query-gpu=index,name,memory.total,memory.free,driver_version",
	"--format=csv,noheader,nounits",
}

func detectCUDA(ctx context.Context, o Options) Backend {
	b := Backend{Name: BackendCUDA}
	out, reason := runNvidiaSMI(ctx, o)
	if reason != "" {
		b.Reason = reason
		return b
	}
	devs, err := parseNvidiaSMI(out)
	if err != nil {
		b.Reason = "nvidia-smi failed: " + err.Error()
		return b
	}
	if len(devs) == 0 {
		b.Reason = "no CUDA devices"
		return b
	}
	b.Devices = devs
	if o.LibDir != "" {
		lib := filepath.Join(o.LibDir, CUDALib)
		if _, err := os.Stat(lib); err != nil {
			b.Reason = "llorch CUDA library not found: " + lib
			return b
		}
	}
	b.Available = true
	return b
}

// runNvidiaSMI runs nvidia-smi and returns its standard output, or a reason
// for the report when it cannot.
func runNvidiaSMI(ctx context.Context, o Options) (out, reason string) {
	name := o.NvidiaSMI
	if name == "" {
		name = "nvidia-smi"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		if o.NvidiaSMI == "" {
			return "", "nvidia-smi not found"
		}
		return "", "nvidia-smi not found: " + o.NvidiaSMI
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, nvidiaSMIArgs...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A hung nvidia-smi (or a script standing in for it) is killed with its
	// whole process group; WaitDelay bounds the wait for pipes held open by
	// anything that escaped the group.
	setProcessGroup(cmd)
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return "", fmt.Sprintf("nvidia-smi failed: timed out after %s", timeout)
		case ctx.Err() != nil:
			return "", "nvidia-smi failed: " + ctx.Err().Error()
		}
		msg := err.Error()
		if line := firstLine(stderr.String()); line != "" {
			msg += ": " + line
		} else if line := firstLine(stdout.String()); line != "" {
			msg += ": " + line // nvidia-smi prints driver errors on stdout
		}
		return "", "nvidia-smi failed: " + msg
	}
	return stdout.String(), ""
}

// firstLine returns the first non-blank line of s, trimmed and cut to 200 bytes.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			if len(line) > 200 {
				line = line[:200] + "…"
			}
			return line
		}
	}
	return ""
}

// parseNvidiaSMI reads the output of nvidia-smi with nvidiaSMIArgs: one line
// per GPU, "index, name, memory.total, memory.free, driver_version", memory
// in MiB. A memory field nvidia-smi cannot fill ("[N/A]", "[Not Supported]")
// reads as 0. Blank lines are skipped; any other malformed line is an error.
func parseNvidiaSMI(out string) ([]Device, error) {
	var devs []Device
	n := 0
	for line := range strings.Lines(out) {
		n++
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 5 {
			return nil, fmt.Errorf("line %d: want 5 fields, got %d", n, len(f))
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		k := len(f)
		idx, err := strconv.Atoi(f[0])
		if err != nil || idx < 0 {
			return nil, fmt.Errorf("line %d: bad index %q", n, f[0])
		}
		total, err := parseMiB(f[k-3])
		if err != nil {
			return nil, fmt.Errorf("line %d: memory.total: %w", n, err)
		}
		free, err := parseMiB(f[k-2])
		if err != nil {
			return nil, fmt.Errorf("line %d: memory.free: %w", n, err)
		}
		devs = append(devs, Device{
			Index: idx,
			// A name with commas spans several fields.
			Name:          strings.Join(f[1:k-3], ","),
			MemTotalBytes: total,
			MemFreeBytes:  free,
			Driver:        f[k-1],
		})
	}
	return devs, nil
}

// parseMiB parses a memory figure in MiB into bytes; nvidia-smi's
// placeholders for a missing value read as 0.
func parseMiB(s string) (uint64, error) {
	if s == "" || strings.HasPrefix(s, "[") || s == "N/A" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	if n > math.MaxUint64>>20 {
		return 0, fmt.Errorf("number %q overflows", s)
	}
	return n << 20, nil
}
