package worker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCUDAFailsFast runs `llorch worker --backend cuda` as a real child
// process on a machine where CUDA is not usable: it must exit 1 with the
// reason and the backends that are available, never fall back to the CPU.
func TestCUDAFailsFast(t *testing.T) {
	junk := t.TempDir()
	if err := os.WriteFile(filepath.Join(junk, "libggml-cuda.so"), []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A copy of the binary whose ../lib/llorch is known to be empty.
	bin := filepath.Join(t.TempDir(), "bin", "llorch")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(binPath, bin); err != nil {
		data, err := os.ReadFile(binPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	release := filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib", "llorch")
	cases := []struct {
		name    string
		libPath string // LLORCH_LIB_PATH; empty: unset
		args    []string
		want    []string
	}{
		{"no library", "", []string{"worker", "--backend", "cuda", "--model", tinyPath},
			[]string{`backend "cuda" is not usable: libggml-cuda.so not found in ` + release, "make cuda", "(available: cpu)"}},
		{"env searched first", "/nonexistent/libs", []string{"worker", "--backend", "cuda", "--model", tinyPath},
			[]string{"not found in /nonexistent/libs, " + release, "(available: cpu)"}},
		{"not a library", junk, []string{"worker", "--backend", "cuda", "--gpu", "1", "--model", tinyPath},
			[]string{"llamacpp: cannot load backend library " + filepath.Join(junk, "libggml-cuda.so"), "(available: cpu)"}},
		{"bench too", "", []string{"worker", "bench", "--backend", "cuda", "--model", tinyPath},
			[]string{`backend "cuda" is not usable`, "(available: cpu)"}},
		{"bad gpu layers", "", []string{"worker", "--backend", "cuda", "--gpu-layers", "most", "--model", tinyPath},
			[]string{`--gpu-layers must be a count or "all"`}},
		{"missing cpu variant", junk, []string{"worker", "--cpu-variant", "icelake", "--model", tinyPath},
			[]string{"--cpu-variant icelake: no libggml-cpu-icelake.so in the library directory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "LLORCH_LIB_PATH=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			if tc.libPath != "" {
				cmd.Env = append(cmd.Env, "LLORCH_LIB_PATH="+tc.libPath)
			}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1; output:\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "worker listening") || strings.Contains(string(out), "model loaded") {
				t.Errorf("worker started anyway:\n%s", out)
			}
		})
	}
}

// TestCPUVariant runs `llorch worker bench` over a library directory holding
// real CPU variants (`make loader-check` builds them and sets
// LLORCH_TEST_CPU_VARIANTS): the best one for this CPU is loaded next to the
// built-in CPU backend and serves the model.
func TestCPUVariant(t *testing.T) {
	dir := os.Getenv("LLORCH_TEST_CPU_VARIANTS")
	if dir == "" {
		t.Skip("LLORCH_TEST_CPU_VARIANTS not set (make loader-check)")
	}
	cmd := exec.Command(binPath, "worker", "bench", "--model", tinyPath, "--threads", "1", "-p", "32", "-n", "8", "--reps", "1")
	cmd.Env = append(os.Environ(), "LLORCH_LIB_PATH="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `msg="cpu variant" lib=`+dir+"/libggml-cpu-") {
		t.Errorf("no CPU variant loaded:\n%s", out)
	}
	// llama_print_system_info lists every CPU backend in the registry.
	if n := strings.Count(string(out), "CPU : "); n != 2 {
		t.Errorf("system info lists %d CPU backends, want the built-in one and the variant:\n%s", n, out)
	}
	off := exec.Command(binPath, "worker", "bench", "--cpu-variant", "off", "--model", tinyPath, "--threads", "1", "-p", "8", "-n", "2", "--reps", "1")
	off.Env = cmd.Env
	if out, err := off.CombinedOutput(); err != nil || strings.Contains(string(out), "cpu variant") {
		t.Errorf("--cpu-variant off: %v\n%s", err, out)
	}
}
