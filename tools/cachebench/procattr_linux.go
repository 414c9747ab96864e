package main

import "syscall"

// procAttr puts a child in its own process group (stop signals the group) and
// has the kernel kill it when this process dies, however it dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
