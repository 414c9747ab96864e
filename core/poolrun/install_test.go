package poolrun_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/detect"
	"github.com/llorch/llorch/core/poolrun"
	"github.com/llorch/llorch/core/remote/sshtest"
)

func TestInstall(t *testing.T) {
	libs := map[string]string{"libggml-cpu-skylakex.so": "avx512", "libggml-cpu-icelake.so": "vnni", "libggml-cuda.so": "cuda"}
	exe := kit.Release(t, libs)
	for name, tg := range transports(t) {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			dest := filepath.Join(root, "bin", "llorch")
			libDir := filepath.Join(root, "lib", "llorch")
			// The installed binary looks there (core/detect.LibDirs).
			if got := filepath.Clean(detect.LibDirs("", dest)[0]); got != libDir {
				t.Fatalf("the binary at %s looks for libraries in %s, not %s", dest, got, libDir)
			}
			// Left over from another build: a backend library (goes) and a
			// file of the user's (stays).
			if err := os.MkdirAll(libDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for n, c := range map[string]string{"libggml-cpu-old.so": "old", "notes.txt": "mine"} {
				if err := os.WriteFile(filepath.Join(libDir, n), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := dial(t, tg)
			var log bytes.Buffer
			rep, err := c.Install(t.Context(), poolrun.InstallOptions{Dest: dest, Exe: exe, Log: &log})
			if err != nil {
				t.Fatalf("Install: %v\n%s", err, log.String())
			}
			t.Log(log.String())
			if !rep.Changed() || !rep.Binary.Copied || len(rep.Libs) != len(libs) || filepath.Clean(rep.LibDir) != libDir ||
				rep.Build.Version != buildinfo.Version || len(rep.Removed) != 1 {
				t.Fatalf("report = %+v", rep)
			}
			same(t, exe, dest, 0o755)
			for n := range libs {
				same(t, filepath.Join(filepath.Dir(exe), "..", "lib", "llorch", n), filepath.Join(libDir, n), 0o644)
			}
			if _, err := os.Stat(filepath.Join(libDir, "libggml-cpu-old.so")); err == nil {
				t.Error("a backend library of another build was left")
			}
			if got, err := os.ReadFile(filepath.Join(libDir, "notes.txt")); err != nil || string(got) != "mine" {
				t.Errorf("notes.txt: %q, %v", got, err)
			}
			for _, d := range []string{filepath.Dir(dest), libDir} {
				entries, _ := os.ReadDir(d)
				for _, e := range entries {
					if strings.Contains(e.Name(), ".tmp-") {
						t.Errorf("temporary file left: %s", filepath.Join(d, e.Name()))
					}
				}
			}

			// The installed binary runs pool commands.
			tg2 := tg
			tg2.LlorchPath, tg2.PoolDir = dest, t.TempDir()
			var st struct{ Backends []struct{ Name string } }
			if err := dial(t, tg2).PoolJSON(t.Context(), []string{"backends", "list"}, nil, &st); err != nil || len(st.Backends) == 0 {
				t.Fatalf("pool through the installed binary: %+v, %v", st, err)
			}

			// Again: nothing to copy.
			rep, err = c.Install(t.Context(), poolrun.InstallOptions{Dest: dest, Exe: exe})
			if err != nil || rep.Changed() || rep.Binary.SHA256 == "" {
				t.Fatalf("second Install = %+v, %v", rep, err)
			}
			// One library changed on the host: only it is copied back.
			if err := os.WriteFile(filepath.Join(libDir, "libggml-cuda.so"), []byte("tampered"), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err = c.Install(t.Context(), poolrun.InstallOptions{Dest: dest, Exe: exe})
			if err != nil || rep.Binary.Copied {
				t.Fatalf("third Install = %+v, %v", rep, err)
			}
			for _, f := range rep.Libs {
				if f.Copied != (filepath.Base(f.Path) == "libggml-cuda.so") {
					t.Errorf("%s copied = %v", f.Path, f.Copied)
				}
			}
			same(t, filepath.Join(filepath.Dir(exe), "..", "lib", "llorch", "libggml-cuda.so"), filepath.Join(libDir, "libggml-cuda.so"), 0o644)
		})
	}
}

// same fails the test unless got has want's content and mode.
func same(t *testing.T, want, got string, mode os.FileMode) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("%s differs from %s (%v)", got, want, err)
	}
	if st, err := os.Stat(got); err != nil || st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v (%v), want %v", got, st.Mode().Perm(), err, mode)
	}
}

func TestInstallWithoutLibDir(t *testing.T) {
	tg := sshTarget(t, sshtest.Start(t))
	c := dial(t, tg)
	dest := filepath.Join(t.TempDir(), "bin", "llorch")
	// kit.Bin has no lib/llorch next to it (its directory's parent is the
	// temp root, which must not hold lib/llorch for this test to mean anything).
	if _, err := os.Stat(filepath.Join(filepath.Dir(kit.Bin), "..", "lib", "llorch")); err == nil {
		t.Skip("a lib/llorch exists next to the test binary's directory")
	}
	rep, err := c.Install(t.Context(), poolrun.InstallOptions{Dest: dest, Exe: kit.Bin})
	if err != nil || !rep.Binary.Copied || len(rep.Libs) != 0 || rep.Build.Version != buildinfo.Version {
		t.Fatalf("Install = %+v, %v", rep, err)
	}
}

func TestInstallLocalNeedsDest(t *testing.T) {
	c := dial(t, poolrun.Target{Transport: api.TransportLocal})
	if _, err := c.Install(t.Context(), poolrun.InstallOptions{}); !errors.Is(err, poolrun.ErrLocal) {
		t.Fatalf("Install without Dest = %v, want ErrLocal", err)
	}
	if _, err := c.Install(t.Context(), poolrun.InstallOptions{Dest: t.TempDir() + "/"}); err == nil {
		t.Fatal("a directory accepted as destination")
	}
}
