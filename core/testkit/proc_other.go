//go:build !linux

package testkit

import "syscall"

// procAttr puts a child in its own process group (a signal reaches all of it).
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
