//go:build unix

package routing

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group that p leads.
func killGroup(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGKILL) }

// residentBytes is the resident memory of process pid, from /proc (0 where
// there is none).
func residentBytes(pid int) int64 { return statm(strconv.Itoa(pid), 1) }

// statm is field i of /proc/PID/statm in bytes: 0 the address space, 1 the
// resident memory; 0 where there is no /proc.
func statm(pid string, i int) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) <= i {
		return 0
	}
	pages, _ := strconv.ParseInt(f[i], 10, 64)
	return pages * int64(os.Getpagesize())
}

// limitSelf limits the running process: no core dumps, cpuSeconds of CPU
// time (then SIGXCPU, a second later SIGKILL), mem bytes of address space
// more than it has now (where /proc tells; not under the race detector,
// which maps terabytes), goroutine stacks of trialStack, and a garbage
// collector that works harder past half of mem.
func limitSelf(mem int64, cpuSeconds uint64) {
	syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: cpuSeconds, Max: cpuSeconds + 1})
	if as := statm("self", 0); as > 0 && !raceEnabled {
		syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: uint64(as + mem), Max: uint64(as + mem)})
	}
	debug.SetMaxStack(trialStack)
	debug.SetMemoryLimit(mem / 2)
	runtime.GOMAXPROCS(min(2, runtime.GOMAXPROCS(0)))
}
