package workerd

import (
	"os"
	"strconv"
	"strings"
)

// selfRSS is this process's resident memory in bytes, from the second field
// of /proc/self/statm (pages); 0 where there is no such file. One small
// read: /health and each heartbeat call it once.
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
