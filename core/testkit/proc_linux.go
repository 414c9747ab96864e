package testkit

import "syscall"

// procAttr puts a child in its own process group (a signal reaches all of
// it) and has the kernel kill it when this process dies, however it dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
