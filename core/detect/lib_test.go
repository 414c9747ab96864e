package detect

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLibDirs(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "bin", "llorch")
	release := filepath.Join(filepath.Dir(filepath.Dir(exe)), "lib", "llorch")
	tests := []struct {
		name, env, exe string
		want           []string
	}{
		{"env first", "/opt/llorch-libs", exe, []string{"/opt/llorch-libs", release}},
		{"no env", "", exe, []string{release}},
		{"no exe", "/x", "", []string{"/x"}},
		{"nothing", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LibDirs(tt.env, tt.exe); !slices.Equal(got, tt.want) {
				t.Errorf("LibDirs(%q, %q) = %q, want %q", tt.env, tt.exe, got, tt.want)
			}
		})
	}
}

func TestLibDirsFollowsSymlink(t *testing.T) {
	root := t.TempDir()
	exe := filepath.Join(root, "opt", "bin", "llorch")
	link := filepath.Join(root, "usr", "bin", "llorch")
	for _, d := range []string{filepath.Dir(exe), filepath.Dir(link)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, link); err != nil {
		t.Skip(err)
	}
	got := LibDirs("", link)
	want, err := filepath.EvalSymlinks(filepath.Join(root, "opt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != filepath.Join(want, "lib", "llorch") {
		t.Errorf("LibDirs via symlink = %q, want the real binary's %s/lib/llorch", got, want)
	}
}

func TestFindLib(t *testing.T) {
	first, second, empty := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{first, second} {
		if err := os.WriteFile(filepath.Join(d, CUDALib), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(empty, CUDALib), 0o755); err != nil { // a directory is not the library
		t.Fatal(err)
	}
	if got, err := FindLib(CUDALib, []string{empty, first, second}); err != nil || got != filepath.Join(first, CUDALib) {
		t.Errorf("FindLib = %q, %v; want the first directory that has it", got, err)
	}
	_, err := FindLib(CUDALib, []string{empty, "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), empty+", /nonexistent") || !strings.Contains(err.Error(), "LLORCH_LIB_PATH") {
		t.Errorf("FindLib error = %v; want every place it looked and the way out", err)
	}
	if _, err := FindLib(CUDALib, nil); err == nil || !strings.Contains(err.Error(), "LLORCH_LIB_PATH") {
		t.Errorf("FindLib with no directories: %v", err)
	}
}
