package pool_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/testkit"
	"github.com/llorch/llorch/core/workerclient"
)

var (
	kit      *testkit.Kit
	binPath  string
	tinyPath string
	tinySHA  string
)

func TestMain(m *testing.M) {
	testkit.Main(m, func(k *testkit.Kit) {
		kit, binPath, tinyPath = k, k.Bin, k.Tiny
		data, err := os.ReadFile(tinyPath)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(data)
		tinySHA = hex.EncodeToString(sum[:])
	})
}

// pool runs `llorch pool` commands against one pool dir.
type pool struct {
	t   *testing.T
	dir string
	env []string
}

func newPool(t *testing.T) *pool {
	p := &pool{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		// Never leave workers behind.
		p.run("worker", "stop", "--all", "--grace", "2s")
	})
	return p
}

// run returns stdout, stderr and the exit code.
func (p *pool) run(args ...string) (string, string, int) {
	p.t.Helper()
	cmd := exec.Command(binPath, append([]string{"pool", "--pool-dir", p.dir}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (p *pool) ok(args ...string) string {
	p.t.Helper()
	out, errOut, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("llorch pool %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

func (p *pool) jsonOut(v any, args ...string) {
	p.t.Helper()
	out := p.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		p.t.Fatalf("%v: bad JSON %v:\n%s", args, err, out)
	}
}

type workerRow struct {
	ID        string `json:"id"`
	PID       int    `json:"pid"`
	URL       string `json:"url"`
	Alive     bool   `json:"alive"`
	Status    string `json:"status"`
	SlotsBusy int    `json:"slots_busy"`
	Total     int    `json:"slots_total"`
}

func (p *pool) workers() []workerRow {
	var rows []workerRow
	p.jsonOut(&rows, "worker", "list")
	return rows
}

func TestModelsFileRefAndSynth(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath, "--alias", "small")
	var ms []struct {
		ID, Path, SHA256, Arch string
		InPlace                bool `json:"in_place"`
	}
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 1 || ms[0].ID != "tiny" || ms[0].SHA256 != tinySHA || !ms[0].InPlace || ms[0].Path != tinyPath || ms[0].Arch != "llama" {
		t.Fatalf("catalog = %+v", ms)
	}
	info := p.ok("models", "info", "small")
	if !strings.Contains(info, "llama") || !strings.Contains(info, "chat template") {
		t.Errorf("info:\n%s", info)
	}
	p.ok("models", "verify", "tiny")
	p.ok("models", "synth", "demo", "--preset", "tiny", "--type", "q8_0")
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 2 {
		t.Fatalf("after synth: %+v", ms)
	}
	p.ok("models", "rm", "small")
	if _, err := os.Stat(tinyPath); err != nil {
		t.Fatalf("rm of an in-place model deleted the file: %v", err)
	}
	_, errOut, code := p.run("models", "info", "tiny")
	if code != 1 || !strings.Contains(errOut, "models download") {
		t.Errorf("info of a removed model: %d %s", code, errOut)
	}
	for _, bad := range []string{"../evil", "a/b", "x; touch /tmp/pwned", ".."} {
		if _, _, code := p.run("models", "synth", bad); code == 0 {
			t.Errorf("model name %q accepted", bad)
		}
	}
}

// A model file cut short is refused as truncated, with both sizes, and stays
// out of the catalog.
func TestDownloadTruncatedFile(t *testing.T) {
	full, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.gguf")
	if err := os.WriteFile(cut, full[:100_000], 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPool(t)
	_, errOut, code := p.run("models", "download", "file:"+cut)
	if code != 1 || !strings.Contains(errOut, "truncated") || !strings.Contains(errOut, "has 100000 bytes") ||
		!strings.Contains(errOut, fmt.Sprintf("describes %d", len(full))) {
		t.Errorf("download of a truncated file: exit %d: %s", code, errOut)
	}
	var ms []struct{ ID string }
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 0 {
		t.Errorf("catalog = %+v", ms)
	}
}

// Concurrent `models synth` of one name (real processes): each exits 0 and
// the catalog holds one whole model; the model file has one writer at a time.
func TestSynthConcurrent(t *testing.T) {
	p := newPool(t)
	const n = 3
	type result struct {
		code   int
		errOut string
	}
	results := make(chan result, n)
	for range n {
		go func() {
			_, errOut, code := p.run("models", "synth", "demo", "--type", "q8_0")
			results <- result{code, errOut}
		}()
	}
	for range n {
		if r := <-results; r.code != 0 {
			t.Errorf("concurrent synth: exit %d: %s", r.code, r.errOut)
		}
	}
	var ms []struct{ ID, Path string }
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 1 || ms[0].ID != "demo" {
		t.Fatalf("catalog = %+v", ms)
	}
	p.ok("models", "verify", "demo")
	entries, err := os.ReadDir(filepath.Join(p.dir, "models"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "demo.gguf" {
			t.Errorf("left behind in models/: %s", e.Name())
		}
	}
}

// While another process holds a model's lock, synth of that name says it
// waits and finishes once the lock is free; a download of it is refused.
func TestSynthWaitsForTheModelLock(t *testing.T) {
	p := newPool(t)
	if err := os.MkdirAll(filepath.Join(p.dir, "models"), 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(p.dir, "models", "tiny.gguf.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := p.run("models", "download", "file:"+tinyPath)
	if code != 1 || !strings.Contains(errOut, "another download or synth of tiny is running") {
		t.Errorf("download while locked: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(binPath, "pool", "--pool-dir", p.dir, "models", "synth", "tiny")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string, 1)
	rest := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "waiting for another download or synth of tiny") {
				select {
				case waiting <- sc.Text():
				default:
				}
			}
		}
		rest <- all.String()
	}()
	select {
	case <-waiting:
	case out := <-rest:
		t.Fatalf("synth did not wait for the lock:\n%s", out)
	case <-time.After(60 * time.Second):
		t.Fatal("synth never said it was waiting")
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	out := <-rest
	if err := cmd.Wait(); err != nil {
		t.Fatalf("synth after the lock was freed: %v\n%s", err, out)
	}
	var ms []struct{ ID string }
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 1 || ms[0].ID != "tiny" {
		t.Errorf("catalog = %+v", ms)
	}
}

func TestDownloadFromHub(t *testing.T) {
	data, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/org/repo/resolve/main/tiny-q.gguf" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Linked-Etag", `"`+tinySHA+`"`)
		http.ServeContent(w, r, "tiny-q.gguf", time.Time{}, bytes.NewReader(data))
	}))
	defer hub.Close()
	p := newPool(t)
	p.env = []string{"HF_ENDPOINT=" + hub.URL}
	p.ok("models", "download", "hf:org/repo/tiny-q.gguf")
	var ms []struct {
		ID       string
		Verified bool
	}
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 1 || ms[0].ID != "tiny-q" || !ms[0].Verified {
		t.Fatalf("catalog = %+v", ms)
	}
	_, errOut, code := p.run("models", "download", "hf:org/repo/missing.gguf")
	if code != 1 || !strings.Contains(strings.ToLower(errOut), "not found") {
		t.Errorf("missing file: %d %s", code, errOut)
	}
}

func TestBackends(t *testing.T) {
	p := newPool(t)
	p.env = []string{"LLORCH_NVIDIA_SMI=/nonexistent/nvidia-smi"}
	var rep struct {
		Backends []struct {
			Name      string
			Available bool
			Reason    string
		}
	}
	p.jsonOut(&rep, "backends", "detect")
	got := map[string]bool{}
	for _, b := range rep.Backends {
		got[b.Name] = b.Available
		if !b.Available && b.Reason == "" {
			t.Errorf("%s unavailable without a reason", b.Name)
		}
	}
	if !got["cpu"] || got["cuda"] {
		t.Errorf("backends = %+v", rep.Backends)
	}
	p.ok("backends", "list")
	// cuda requested on a machine without it: exit 1 naming what is available.
	p.ok("models", "download", "file:"+tinyPath)
	_, errOut, code := p.run("worker", "spawn", "cuda", "--model", "tiny")
	if code != 1 || !strings.Contains(errOut, "available: cpu") {
		t.Errorf("spawn cuda: exit %d: %s", code, errOut)
	}
	_, errOut, code = p.run("worker", "spawn", "cpu", "--model", "nope")
	if code != 1 || !strings.Contains(errOut, "models download") {
		t.Errorf("spawn unknown model: exit %d: %s", code, errOut)
	}
	// A network address without a token: the worker refuses, spawn says why
	// and keeps no record.
	_, errOut, code = p.run("worker", "spawn", "cpu", "--model", "tiny", "--host", "0.0.0.0")
	if code != 1 || !strings.Contains(errOut, "refusing to listen on 0.0.0.0 without --token") {
		t.Errorf("spawn on 0.0.0.0 without a token: exit %d: %s", code, errOut)
	}
	if rows := p.workers(); len(rows) != 0 {
		t.Errorf("a refused worker is listed: %+v", rows)
	}
}

func TestWorkerLifecycle(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath)
	out := p.ok("worker", "spawn", "cpu", "--model", "tiny", "--slots", "2")
	fields := strings.Fields(out)
	if len(fields) != 2 || !strings.HasPrefix(fields[1], "http://127.0.0.1:") {
		t.Fatalf("spawn printed %q", out)
	}
	id, url := fields[0], fields[1]
	resp, err := http.Post(url+"/execute", "application/json", strings.NewReader(`{"prompt":"hi","max_tokens":2}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("execute on spawned worker: %v %v", resp, err)
	}
	resp.Body.Close()
	rows := p.workers()
	if len(rows) != 1 || rows[0].ID != id || !rows[0].Alive || rows[0].Status != "ready" || rows[0].Total != 2 {
		t.Fatalf("list = %+v", rows)
	}
	// The worker is in its own process group.
	if pgid, err := syscall.Getpgid(rows[0].PID); err != nil || pgid != rows[0].PID {
		t.Errorf("pgid %d, pid %d, %v", pgid, rows[0].PID, err)
	}
	// A busy port moves to the next free one.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	out2 := p.ok("worker", "spawn", "cpu", "--model", "tiny", "--slots", "1", "--port", fmt.Sprint(busyPort))
	if f := strings.Fields(out2); len(f) != 2 || f[1] == fmt.Sprintf("http://127.0.0.1:%d", busyPort) {
		t.Errorf("spawn on a busy port printed %q", out2)
	}
	var st struct {
		Backends []any       `json:"backends"`
		Models   []any       `json:"models"`
		Workers  []workerRow `json:"workers"`
	}
	p.jsonOut(&st, "status")
	if len(st.Models) != 1 || len(st.Workers) != 2 || len(st.Backends) == 0 {
		t.Errorf("status = %+v", st)
	}
	p.ok("worker", "stop", id)
	if left := p.workers(); len(left) != 1 || left[0].ID == id {
		t.Errorf("after stop %s: %+v", id, left)
	}
	p.ok("worker", "stop", "--all", "--grace", "5s")
	if rows := p.workers(); len(rows) != 0 {
		t.Errorf("after stop: %+v", rows)
	}
	if err := syscall.Kill(rows[0].PID, 0); err == nil {
		t.Error("process still alive after stop")
	}
}

func TestCleanup(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath)
	spawn := func() workerRow {
		id := strings.Fields(p.ok("worker", "spawn", "cpu", "--model", "tiny", "--slots", "1"))[0]
		for _, r := range p.workers() {
			if r.ID == id {
				return r
			}
		}
		t.Fatalf("spawned %s is not listed", id)
		return workerRow{}
	}
	dead := spawn()
	hung := spawn()
	healthy := spawn()
	if err := syscall.Kill(dead.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(hung.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A stray: a worker of this pool dir with no metadata.
	stray := kit.StartWorker(t, []string{"LLORCH_POOL_DIR=" + p.dir}, "--model", tinyPath, "--threads", "1", "--slots", "1")
	// A worker of another pool dir is not ours.
	other := kit.StartWorker(t, []string{"LLORCH_POOL_DIR=" + t.TempDir()}, "--model", tinyPath, "--threads", "1", "--slots", "1")

	var rep struct {
		Dead   []string `json:"dead"`
		Hung   []string `json:"hung"`
		Strays []int    `json:"strays"`
	}
	p.jsonOut(&rep, "worker", "cleanup", "--health-timeout", "3s")
	if len(rep.Dead) != 1 || rep.Dead[0] != dead.ID || len(rep.Hung) != 1 || rep.Hung[0] != hung.ID ||
		len(rep.Strays) != 1 || rep.Strays[0] != stray.Cmd.Process.Pid {
		t.Fatalf("cleanup = %+v (dead %s hung %s stray %d)", rep, dead.ID, hung.ID, stray.Cmd.Process.Pid)
	}
	select {
	case <-stray.Done():
	case <-time.After(5 * time.Second):
		t.Error("stray still running")
	}
	if err := syscall.Kill(hung.PID, 0); err == nil {
		// It may linger as a zombie of init briefly; its state must not be stopped.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", hung.PID))
		if err == nil && strings.Contains(string(st), ") T ") {
			t.Error("hung worker still stopped, not killed")
		}
	}
	// Second run: nothing to do; the healthy worker untouched.
	p.jsonOut(&rep, "worker", "cleanup", "--health-timeout", "3s")
	if len(rep.Dead)+len(rep.Hung)+len(rep.Strays) != 0 {
		t.Errorf("second cleanup = %+v", rep)
	}
	rows := p.workers()
	if len(rows) != 1 || rows[0].ID != healthy.ID || rows[0].Status != "ready" {
		t.Errorf("after cleanup: %+v", rows)
	}
	// Another pool's worker is untouched: not exited (this test reaps it, so
	// a killed one would be gone), the pid alive, and /health still ready (a
	// zombie would pass signal 0 but cannot answer).
	select {
	case <-other.Done():
		t.Fatalf("another pool's worker exited: %v", other.Err())
	default:
	}
	if err := syscall.Kill(other.Cmd.Process.Pid, 0); err != nil {
		t.Fatalf("another pool's worker: signal 0: %v", err)
	}
	if h := healthOf(t, other.URL); h.Status != "ready" {
		t.Fatalf("another pool's worker: /health %+v", h)
	}
}

func healthOf(t *testing.T, url string) api.Health {
	t.Helper()
	h, err := workerclient.New(url, "", &http.Client{Timeout: 5 * time.Second}).Health(t.Context())
	if err != nil {
		t.Fatalf("%s/health: %v", url, err)
	}
	return *h
}

func TestPIDReuseNotKilled(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath)
	p.ok("worker", "spawn", "cpu", "--model", "tiny", "--slots", "1")
	rows := p.workers()
	// Stop the worker, then record an unrelated live process under its pid's
	// metadata by rewriting the record to point at a sleeping process with a
	// different start time: cleanup must treat the record as dead and leave the
	// process alone.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	reusePID(t, p.dir, rows[0].ID, sleeper.Process.Pid)
	var rep struct {
		Dead []string `json:"dead"`
	}
	p.jsonOut(&rep, "worker", "cleanup")
	if len(rep.Dead) != 1 {
		t.Errorf("record with a reused pid not treated as dead: %+v", rep)
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the unrelated process was killed: %v", err)
	}
	// The real worker lost its record: cleanup killed it as a stray of this pool dir.
}

// reusePID points a worker record at another process's pid, keeping the
// recorded start time: what a reused pid looks like.
func reusePID(t *testing.T, dir, id string, pid int) {
	t.Helper()
	db, err := store.OpenPool(filepath.Join(dir, "pool.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w, err := db.Worker(id)
	if err != nil {
		t.Fatal(err)
	}
	w.PID = pid
	if err := db.PutWorker(w); err != nil {
		t.Fatal(err)
	}
}

// spawn --port auto never picks a port for the worker to bind later (another
// process could take it in between): the worker binds port 0 and reports the
// port the OS chose. Concurrent spawns all come up, on distinct ports.
func TestSpawnPortAuto(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath)
	const n = 3
	outs := make(chan string, n)
	for range n {
		go func() {
			out, errOut, code := p.run("worker", "spawn", "cpu", "--model", "tiny", "--slots", "1")
			if code != 0 {
				out = fmt.Sprintf("exit %d: %s", code, errOut)
			}
			outs <- out
		}()
	}
	urls := map[string]bool{}
	for range n {
		out := <-outs
		f := strings.Fields(out)
		if len(f) != 2 || !strings.HasPrefix(f[1], "http://127.0.0.1:") {
			t.Fatalf("spawn printed %q", out)
		}
		urls[f[1]] = true
	}
	if len(urls) != n {
		t.Fatalf("%d spawns, %d distinct URLs: %v", n, len(urls), urls)
	}
	rows := p.workers()
	if len(rows) != n {
		t.Fatalf("list = %+v", rows)
	}
	for _, r := range rows {
		if !urls[r.URL] || r.Status != "ready" {
			t.Errorf("row %+v: URL not among %v, or not ready", r, urls)
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.PID))
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Split(string(cmdline), "\x00"); !slices.Contains(args, "--addr-file") || args[slices.Index(args, "--port")+1] != "0" {
			t.Errorf("worker started with %q, want --port 0 --addr-file", args)
		}
		if h := healthOf(t, r.URL); h.WorkerID != r.ID {
			t.Errorf("worker at %s says it is %q, listed as %q", r.URL, h.WorkerID, r.ID)
		}
	}
}
