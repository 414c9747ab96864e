// Package buildinfo carries the version, commit and backend stamped into the
// binary at link time (see the Makefile and goreleaser.yaml).
package buildinfo

import (
	"fmt"
	"runtime"
)

// Set with -ldflags "-X github.com/llorch/llorch/core/buildinfo.Version=...".
var (
	Version = "dev"
	Commit  = "none"
	Backend = "cpu"
)

// String is the one-line version report printed by `llorch version`.
func String() string {
	return fmt.Sprintf("llorch %s (commit %s, backend %s, %s/%s, %s)",
		Version, Commit, Backend, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
