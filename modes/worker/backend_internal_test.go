package worker

import "testing"

func TestParseGPULayers(t *testing.T) {
	for in, want := range map[string]int{"": -1, "all": -1, "0": 0, "12": 12} {
		if got, err := parseGPULayers(in); err != nil || got != want {
			t.Errorf("parseGPULayers(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "most", "1.5"} {
		if _, err := parseGPULayers(in); err == nil {
			t.Errorf("parseGPULayers(%q) accepted", in)
		}
	}
}
