// Package testkit holds helpers shared by tests that run real parts: it builds
// the llorch binary once per test binary, writes the synthetic tiny model, and
// starts workers on a port the OS chooses (StartWorker, WaitAddr). StartProc
// runs any llorch child in its own process group with its output in a log
// file, for the soak test and tools such as cachebench that run whole fleets.
package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/llorch/llorch/core/synth"
)

// Kit is what a TestMain prepares.
type Kit struct {
	Dir  string // temporary directory, removed by Close
	Bin  string // the llorch binary
	Tiny string // the tiny synthetic model
}

// Setup builds llorch (with -race when the tests run with it, so the build
// reuses the test's compiled packages) and writes the tiny model. Call it from
// TestMain and Close the Kit after m.Run.
func Setup() (*Kit, error) {
	dir, err := os.MkdirTemp("", "llorch-test-")
	if err != nil {
		return nil, err
	}
	k := &Kit{Dir: dir, Bin: filepath.Join(dir, "llorch"), Tiny: filepath.Join(dir, "tiny.gguf")}
	args := []string{"build", "-o", k.Bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/llorch/llorch")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		k.Close()
		return nil, fmt.Errorf("testkit: building llorch: %w", err)
	}
	if err := synth.Write(k.Tiny, synth.Tiny()); err != nil {
		k.Close()
		return nil, err
	}
	return k, nil
}

// Close removes the kit's files.
func (k *Kit) Close() { os.RemoveAll(k.Dir) }

// Main is a whole TestMain: it sets up the kit, hands it to use, runs the
// tests and removes the kit.
func Main(m *testing.M, use func(*Kit)) {
	k, err := Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	use(k)
	code := m.Run()
	k.Close()
	os.Exit(code)
}
