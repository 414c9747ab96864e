// Package supervise starts detached child processes and later finds, checks
// and stops them, possibly from another invocation of the program.
//
// A process is identified by a [Proc]: its pid plus its start time (field 22
// of /proc/PID/stat, in clock ticks since boot). Pids are reused; the start
// time is not, so every operation that signals a process first checks that
// the start time still matches and refuses with [ErrPIDReused] when it does
// not.
//
// [Start] runs a child in its own process group, with stdin on /dev/null and
// stdout and stderr appended to a log file, and returns as soon as the child
// is forked. A goroutine reaps the child while this process lives; when this
// process exits the child is reparented to init and keeps running. That is
// the point: the pool CLI spawns workers that outlive it.
//
// [Stop] sends SIGTERM to the process group, waits up to a grace period and
// then sends SIGKILL to the group. [Kill] sends SIGKILL at once. [FindByEnv]
// scans /proc for processes whose environment holds KEY=VALUE, which finds
// workers that lost their metadata.
//
// The package works on Linux only (it reads /proc). On other systems every
// function reports [ErrUnsupported].
package supervise
