package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// Release lays the kit's binary out as a release archive holds it,
// dir/bin/llorch next to dir/lib/llorch/ with libs (name -> content), and
// returns the binary's path. The binary is a hard link where it can be (so
// its os.Executable is that path), else a copy.
func (k *Kit) Release(t testing.TB, libs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "llorch")
	for _, d := range []string{filepath.Dir(bin), filepath.Join(dir, "lib", "llorch")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(k.Bin, bin); err != nil {
		data, err := os.ReadFile(k.Bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range libs {
		if err := os.WriteFile(filepath.Join(dir, "lib", "llorch", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}
