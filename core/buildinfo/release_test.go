package buildinfo

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReleaseConfig checks goreleaser.yaml against this package and the
// worker's library layout (`goreleaser check`, run by `make release-check`,
// validates its syntax): every archive backend is stamped into the binary
// through variables that exist, and the cuda archive carries the library
// where the worker looks for it.
func TestReleaseConfig(t *testing.T) {
	raw, err := os.ReadFile("../../goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	for _, m := range regexp.MustCompile(`-X github.com/llorch/llorch/core/buildinfo\.(\w+)=`).FindAllStringSubmatch(cfg, -1) {
		switch m[1] {
		case "Version", "Commit", "Backend":
		default:
			t.Errorf("goreleaser.yaml sets buildinfo.%s, which does not exist", m[1])
		}
	}
	for _, backend := range []string{"cpu", "cuda", "metal"} {
		if !strings.Contains(cfg, "core/buildinfo.Backend="+backend+"\n") {
			t.Errorf("no build stamps Backend=%s", backend)
		}
		if !strings.Contains(cfg, `name_template: "{{ .ProjectName }}_{{ .Version }}_{{ .Os }}_{{ .Arch }}_`+backend+`"`) {
			t.Errorf("no archive llorch_<version>_<os>_<arch>_%s", backend)
		}
	}
	// bin/llorch finds <dir of llorch>/../lib/llorch/libggml-cuda.so.
	if !strings.Contains(cfg, "binary: bin/llorch") || !strings.Contains(cfg, "src: lib/llorch/libggml-cuda.so\n        dst: lib/llorch") {
		t.Error("the cuda archive must hold bin/llorch and lib/llorch/libggml-cuda.so")
	}
	if !strings.Contains(cfg, "CGO_CFLAGS=-O3 -march=x86-64-v3") {
		t.Error("linux/amd64 builds must target the portable x86-64-v3 baseline")
	}
}
