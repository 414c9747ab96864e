//go:build !unix

package routing

import (
	"os"
	"runtime/debug"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process) { p.Kill() }

func residentBytes(pid int) int64 { return 0 }

func limitSelf(mem int64, cpuSeconds uint64) {
	debug.SetMaxStack(trialStack)
	debug.SetMemoryLimit(mem / 2)
}
