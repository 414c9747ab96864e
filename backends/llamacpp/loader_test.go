package llamacpp_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/testkit"
)

// cc builds a shared library from C source with the C compiler cgo uses.
func cc(t *testing.T, name, src string, flags ...string) string {
	t.Helper()
	compiler := "cc"
	if out, err := exec.Command("go", "env", "CC").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		compiler = string(bytes.TrimSpace(out))
	}
	if _, err := exec.LookPath(compiler); err != nil {
		t.Skipf("no C compiler: %v", err)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, name+".c")
	so := filepath.Join(dir, name+".so")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-shared", "-fPIC", "-o", so, c}, flags...)
	if out, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", compiler, err, out)
	}
	return so
}

// withBase builds a backend-shaped module linked against a library that
// defines ggml (like a module built with libggml-base.so as a dependency).
func withBase(t *testing.T) string {
	base := cc(t, "libggml-base", "void *ggml_init(void *p) { return p; }\n")
	return cc(t, "needsbase", "void *ggml_init(void *p);\nvoid *ggml_backend_init(void) { return ggml_init(0); }\n",
		"-L"+filepath.Dir(base), "-l:libggml-base.so", "-Wl,-rpath,"+filepath.Dir(base))
}

// TestLoadBackendRefuses checks the loader's guards with real shared
// libraries: none of them may reach ggml's registry.
func TestLoadBackendRefuses(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "libggml-cuda.so")
	if err := os.WriteFile(junk, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(t.TempDir(), "libggml-cuda.so"), "No such file"},
		{"not ELF", junk, "libggml-cuda.so"},
		// A module that brings its own ggml-base would mean two registries.
		{"own ggml", cc(t, "ownggml", "void *ggml_init(void *p) { return p; }\nvoid *ggml_backend_init(void) { return 0; }\n"),
			"carries its own copy of ggml (it or a library it needs defines ggml_init)"},
		{"needs a ggml library", withBase(t), "carries its own copy of ggml"},
		{"not a backend", cc(t, "plain", "int answer(void) { return 42; }\n"), "not a ggml backend module"},
	}
	before := llamacpp.Registry()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := llamacpp.LoadBackend(tc.path)
			if err == nil || !errors.Is(err, llamacpp.ErrBackendLib) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadBackend(%s) = %v, %v; want an ErrBackendLib naming %q", tc.name, b, err, tc.want)
			}
		})
	}
	if after := llamacpp.Registry(); len(after) != len(before) {
		t.Errorf("registry changed by refused libraries: %v -> %v", before, after)
	}
}

// TestBestVariant picks among real modules by their own ggml_backend_score,
// as the worker does among the CPU variants in lib/llorch.
func TestBestVariant(t *testing.T) {
	score := func(name string, n int) string {
		return cc(t, name, "int ggml_backend_score(void) { return "+strconv.Itoa(n)+"; }\n")
	}
	unfit, fair, best, noScore := score("unfit", 0), score("fair", 5), score("best", 9), cc(t, "noscore", "int x;\n")
	junk := filepath.Join(t.TempDir(), "junk.so")
	os.WriteFile(junk, []byte("junk"), 0o644)
	if got, s := llamacpp.BestVariant([]string{unfit, fair, junk, best, noScore}); got != best || s != 9 {
		t.Errorf("BestVariant = %s, %d; want %s, 9", got, s, best)
	}
	if got, s := llamacpp.BestVariant([]string{unfit, noScore, junk}); got != "" || s != 0 {
		t.Errorf("BestVariant with nothing that runs here = %q, %d", got, s)
	}
}

// logBuffer collects llama.cpp/ggml log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLoadBackendLibrary loads a real ggml backend module built from the
// pinned sources by scripts/build-backend.sh (`make loader-check` builds the
// BLAS backend and sets LLORCH_TEST_BACKEND_LIB): the module joins this
// process's one registry, next to the CPU backend compiled in, its ggml calls
// resolve to this binary's ggml, and llama.cpp then runs a model through it.
func TestLoadBackendLibrary(t *testing.T) {
	lib := os.Getenv("LLORCH_TEST_BACKEND_LIB")
	if lib == "" {
		t.Skip("LLORCH_TEST_BACKEND_LIB not set (make loader-check)")
	}
	logs := &logBuffer{}
	llamacpp.SetLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer llamacpp.SetLogger(nil)

	before := llamacpp.Registry()
	b, err := llamacpp.LoadBackend(lib)
	if err != nil {
		t.Fatal(err)
	}
	again, err := llamacpp.LoadBackend(lib)
	if err != nil || again != b {
		t.Fatalf("second LoadBackend = %p, %v; want the first (%p)", again, err, b)
	}
	after := llamacpp.Registry()
	t.Logf("registry before %v, after %v; backend %s with %d device(s)", before, after, b.Name, len(b.Devices))
	if len(after) != len(before)+1 || after[len(after)-1].Name != b.Name {
		t.Fatalf("registry %v -> %v: want %s added once", before, after, b.Name)
	}
	if before[0].Name != "CPU" {
		t.Errorf("registry %v: want the compiled-in CPU backend first", before)
	}
	for _, d := range b.Devices {
		t.Logf("device %d: %s", d.Index, d)
	}

	m := testkit.LoadModel(t, synth.Tiny())
	c, err := m.NewContext(backends.ContextParams{SeqCtx: 512, Seqs: 1, Batch: 256, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toks, err := m.Tokenize(strings.Repeat("The loader shares one ggml with the binary. ", 8), true, false)
	if err != nil || len(toks) < 64 {
		t.Fatalf("tokenize: %d tokens, %v", len(toks), err)
	}
	var batch backends.Batch
	for i, tok := range toks {
		batch.Add(tok, int32(i), 0, i == len(toks)-1)
	}
	if err := c.Decode(&batch); err != nil {
		t.Fatalf("decode through the loaded backend: %v\n%s", err, logs)
	}
	s, err := c.NewSampler(backends.SamplerParams{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tok, err := c.Sample(s, len(toks)-1, nil); err != nil || tok < 0 || int(tok) >= m.Info().VocabSize {
		t.Errorf("sampled token %d out of range (%v)", tok, err)
	}
	// The registry that logged the load is this binary's (its log callback
	// is ours), and llama.cpp split the prompt's graph between the CPU and
	// the loaded backend: a CPU-only graph is one split.
	if !strings.Contains(logs.String(), "loaded "+b.Name+" backend from "+lib) {
		t.Errorf("ggml's registry did not log loading %s:\n%s", lib, logs)
	}
	m2 := regexp.MustCompile(`graph splits = (\d+) \(with bs=`).FindStringSubmatch(logs.String())
	if m2 == nil || m2[1] == "1" {
		t.Errorf("graph splits %v: want the graph spread over CPU and %s", m2, b.Name)
	}
}
