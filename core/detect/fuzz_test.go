package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// FuzzParseNvidiaSMI checks that parseNvidiaSMI never panics and that what it
// accepts survives a round trip through nvidia-smi's own format.
func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add("0, NVIDIA H100 80GB HBM3, 81559, 81000, 550.54.15\n1, NVIDIA H100 80GB HBM3, 81559, 1024, 550.54.15\n")
	f.Add("0, NVIDIA GB10, [N/A], [Not Supported], 580.95.05\r\n")
	f.Add("3, Weird, Name, 100, 50, 1.0")
	f.Add("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		devs, err := parseNvidiaSMI(in)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, d := range devs {
			if d.Index < 0 {
				t.Fatalf("negative index in %+v", d)
			}
			if d.MemTotalBytes%mib != 0 || d.MemFreeBytes%mib != 0 {
				t.Fatalf("memory not in whole MiB: %+v", d)
			}
			fmt.Fprintf(&b, "%d, %s, %d, %d, %s\n", d.Index, d.Name, d.MemTotalBytes/mib, d.MemFreeBytes/mib, d.Driver)
		}
		again, err := parseNvidiaSMI(b.String())
		if err != nil {
			t.Fatalf("reparse of %q: %v", b.String(), err)
		}
		if !slices.Equal(devs, again) {
			t.Fatalf("round trip changed devices:\n got %+v\nwant %+v", again, devs)
		}
	})
}
