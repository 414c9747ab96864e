//go:build !unix

package detect

import "os/exec"

// setProcessGroup does nothing where there are no process groups; context
// cancellation kills the process itself.
func setProcessGroup(*exec.Cmd) {}
