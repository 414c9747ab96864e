package pool_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// What the orchestrator's fleet reads from `llorch pool … --json`.

// strictJSON decodes out into v, refusing fields v does not have.
func strictJSON(t *testing.T, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %T: %v\n%s", v, err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", out)
	}
}

// runIn is run with stdin.
func (p *pool) runIn(stdin string, args ...string) (string, string, int) {
	p.t.Helper()
	cmd := exec.Command(binPath, append([]string{"pool", "--pool-dir", p.dir}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

func (p *pool) spawnJSON(args ...string) api.PoolWorker {
	p.t.Helper()
	var w api.PoolWorker
	strictJSON(p.t, p.ok(append([]string{"--json", "worker", "spawn", "cpu"}, args...)...), &w)
	return w
}

// spawn --id: the caller's id; a live worker of that id is printed, not
// started again; a dead one's record is replaced. The worker registers
// under the catalog id whatever name --model used; --token-file - reads the
// token from stdin.
func TestSpawnIDAndStatus(t *testing.T) {
	p := newPool(t)
	p.ok("models", "download", "file:"+tinyPath, "--alias", "small")
	w := p.spawnJSON("--model", "small", "--id", "w1", "--slots", "2")
	if w.ID != "w1" || w.Model != "tiny" || w.Backend != "cpu" || w.Slots != 2 || !w.Alive || w.Status != api.StatusReady ||
		w.SlotsTotal != 2 || !strings.HasPrefix(w.URL, "http://127.0.0.1:") || w.LogPath == "" || w.PID == 0 {
		t.Fatalf("spawn --json = %+v", w)
	}
	if runtime.GOOS == "linux" && w.RSSBytes < 1<<20 {
		t.Errorf("rss_bytes = %d", w.RSSBytes)
	}
	if h := healthOf(t, w.URL); h.Model.ID != "tiny" || h.WorkerID != "w1" {
		t.Errorf("worker registers model %q as %q; want the catalog id tiny, w1", h.Model.ID, h.WorkerID)
	}
	// Again: the same worker, nothing started.
	again := p.spawnJSON("--model", "tiny", "--id", "w1")
	if again.PID != w.PID || again.URL != w.URL {
		t.Errorf("second spawn --id w1 = %+v, want the running %+v", again, w)
	}
	if rows := p.workers(); len(rows) != 1 {
		t.Fatalf("after a second spawn of w1: %+v", rows)
	}

	// The token from stdin: the worker asks for it.
	out, errOut, code := p.runIn("s3cret-token\n", "--json", "worker", "spawn", "cpu", "--model", "tiny", "--id", "w2", "--slots", "1", "--token-file", "-")
	if code != 0 {
		t.Fatalf("spawn with the token on stdin: exit %d: %s", code, errOut)
	}
	var tw api.PoolWorker
	strictJSON(t, out, &tw)
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"s3cret-token", http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodPost, tw.URL+"/execute", strings.NewReader(`{"prompt":"hi","max_tokens":1}`))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("execute with token %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", tw.PID)); err == nil && bytes.Contains(cmdline, []byte("s3cret")) {
		t.Error("the token is on the worker's command line")
	}
	if _, errOut, code := p.runIn("", "worker", "spawn", "cpu", "--model", "tiny", "--id", "w3", "--token-file", "-"); code != 1 || !strings.Contains(errOut, "token is empty") {
		t.Errorf("empty token on stdin: exit %d: %s", code, errOut)
	}

	st := p.status()
	if st.PoolDir != p.dir || st.Hostname == "" || st.OS != runtime.GOOS || st.Arch != runtime.GOARCH || st.Version == "" {
		t.Errorf("status header = %+v", st)
	}
	if runtime.GOOS == "linux" && (st.RAMTotalBytes == 0 || st.RAMFreeBytes == 0 || st.RAMFreeBytes > st.RAMTotalBytes) {
		t.Errorf("RAM total %d free %d", st.RAMTotalBytes, st.RAMFreeBytes)
	}
	if i := slices.IndexFunc(st.Backends, func(b api.PoolBackend) bool { return b.Name == "cpu" }); i < 0 || !st.Backends[i].Available {
		t.Errorf("backends = %+v", st.Backends)
	}
	if len(st.Models) != 1 || st.Models[0] != (api.PoolModel{ID: "tiny", Ref: "file:" + tinyPath, Path: tinyPath, SHA256: tinySHA, SizeBytes: st.Models[0].SizeBytes}) || st.Models[0].SizeBytes <= 0 {
		t.Errorf("models = %+v", st.Models)
	}
	var w1 api.PoolWorker
	for _, x := range st.Workers {
		if x.ID == "w1" {
			w1 = x
		}
	}
	if w1.PID != w.PID || w1.Status != api.StatusReady || !w1.Alive || w1.SlotsTotal != 2 || (runtime.GOOS == "linux" && w1.RSSBytes < 1<<20) {
		t.Errorf("status worker w1 = %+v", w1)
	}

	// Killed: the record says dead; spawn --id w1 replaces it.
	if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "w1 dead in status", func() bool {
		for _, x := range p.status().Workers {
			if x.ID == "w1" {
				return !x.Alive && x.Status == "dead" && x.RSSBytes == 0
			}
		}
		return false
	})
	re := p.spawnJSON("--model", "tiny", "--id", "w1", "--slots", "2")
	if re.PID == w.PID || re.Status != api.StatusReady {
		t.Errorf("respawn of a dead w1 = %+v", re)
	}
	n := 0
	for _, x := range p.workers() {
		if x.ID == "w1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d records of w1", n)
	}
	for _, bad := range []string{"../x", "a b", "x/y"} {
		if _, _, code := p.run("worker", "spawn", "cpu", "--model", "tiny", "--id", bad); code == 0 {
			t.Errorf("--id %q accepted", bad)
		}
	}
}

func (p *pool) status() api.PoolStatus {
	p.t.Helper()
	var st api.PoolStatus
	strictJSON(p.t, p.ok("--json", "status"), &st)
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A worker that fails to load: spawn exits 1 with the last lines of its
// log, and keeps no record.
func TestSpawnFailureShowsLog(t *testing.T) {
	full, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "broken.gguf")
	if err := os.WriteFile(path, full, 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPool(t)
	p.ok("models", "download", "file:"+path)
	// Cut after it was registered: the worker finds it truncated.
	if err := os.Truncate(path, int64(len(full)/2)); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := p.run("--json", "worker", "spawn", "cpu", "--model", "broken", "--id", "b1")
	if code != 1 || out != "" || !strings.Contains(errOut, "last lines of the worker log") || !strings.Contains(errOut, "truncated") {
		t.Errorf("spawn of a truncated model: exit %d\nstdout %q\nstderr:\n%s", code, out, errOut)
	}
	if rows := p.workers(); len(rows) != 0 {
		t.Errorf("a failed worker is listed: %+v", rows)
	}
	// Its log is kept: `worker logs` reads its end (what the orchestrator
	// shows as a failing model's last_log).
	out, errOut, code = p.run("--json", "worker", "logs", "b1", "--lines", "5")
	var logs struct {
		ID    string   `json:"id"`
		Lines []string `json:"lines"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &logs) != nil || logs.ID != "b1" || len(logs.Lines) == 0 || len(logs.Lines) > 5 ||
		!strings.Contains(strings.Join(logs.Lines, "\n"), "truncated") {
		t.Errorf("worker logs: exit %d %q %s", code, out, errOut)
	}
	for _, bad := range []struct {
		args []string
		code int
	}{{[]string{"worker", "logs", "../pool"}, 2}, {[]string{"worker", "logs", "-x"}, 1}, {[]string{"worker", "logs", "nobody"}, 1}, {[]string{"worker", "logs", "b1", "--lines", "0"}, 2}} {
		if _, errOut, code := p.run(bad.args...); code != bad.code {
			t.Errorf("%v: exit %d, want %d (%s)", bad.args, code, bad.code, errOut)
		}
	}
}

// stop --json: {"stopped":[ids]}; an unknown id is already stopped.
func TestStopJSON(t *testing.T) {
	p := newPool(t)
	var got struct {
		Stopped []string `json:"stopped"`
	}
	strictJSON(t, p.ok("--json", "worker", "stop", "nope"), &got)
	if got.Stopped == nil || len(got.Stopped) != 0 {
		t.Errorf("stop of an unknown id = %+v", got)
	}
	if _, errOut, code := p.run("worker", "stop", "nope"); code != 1 || !strings.Contains(errOut, "no worker") {
		t.Errorf("text stop of an unknown id: exit %d: %s", code, errOut)
	}
	p.ok("models", "download", "file:"+tinyPath)
	w := p.spawnJSON("--model", "tiny", "--id", "s1", "--slots", "1")
	strictJSON(t, p.ok("--json", "worker", "stop", "s1", "--grace", "5s"), &got)
	if !slices.Equal(got.Stopped, []string{"s1"}) {
		t.Errorf("stop s1 = %+v", got)
	}
	// Gone, or a zombie until its new parent reaps it.
	waitFor(t, "s1 gone", func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.PID))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
}

// hubServer serves the tiny model in the hub's layout and counts requests.
func hubServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	data, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/org/repo/resolve/main/tiny-q.gguf" {
			http.NotFound(w, r)
			return
		}
		n.Add(1)
		w.Header().Set("X-Linked-Etag", `"`+tinySHA+`"`)
		http.ServeContent(w, r, "tiny-q.gguf", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(hub.Close)
	return hub, &n
}

// models download --json: NDJSON progress lines, then one done line; a
// second run is done at once; a wrong --sha256 keeps nothing.
func TestDownloadJSON(t *testing.T) {
	hub, requests := hubServer(t)
	p := newPool(t)
	p.env = []string{"HF_ENDPOINT=" + hub.URL}
	lines := func(out string) []map[string]any {
		var ls []map[string]any
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			ls = append(ls, m)
		}
		return ls
	}
	size := float64(0)
	if st, err := os.Stat(tinyPath); err == nil {
		size = float64(st.Size())
	}
	out := p.ok("--json", "models", "download", "hf:org/repo/tiny-q.gguf", "--id", "tq", "--sha256", strings.ToUpper(tinySHA))
	ls := lines(out)
	if len(ls) < 2 {
		t.Fatalf("want progress and done lines:\n%s", out)
	}
	for _, l := range ls[:len(ls)-1] {
		if l["event"] != "progress" || l["total"] != size || l["bytes"].(float64) > size {
			t.Errorf("progress line %v (size %v)", l, size)
		}
	}
	if last := ls[len(ls)-2]; last["bytes"] != size {
		t.Errorf("last progress line %v, want all %v bytes", last, size)
	}
	var done struct {
		Event string        `json:"event"`
		Model api.PoolModel `json:"model"`
	}
	doneLine := out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:]
	strictJSON(t, doneLine, &done)
	if done.Event != "done" || done.Model.ID != "tq" || done.Model.SHA256 != tinySHA || done.Model.Ref != "hf:org/repo/tiny-q.gguf@main" && done.Model.Ref != "hf:org/repo/tiny-q.gguf" ||
		done.Model.SizeBytes != int64(size) || done.Model.Path != filepath.Join(p.dir, "models", "tq.gguf") {
		t.Errorf("done = %+v", done)
	}
	// Again, the same ref: done at once, nothing fetched.
	before := requests.Load()
	again := p.ok("--json", "models", "download", "hf:org/repo/tiny-q.gguf", "--id", "tq", "--sha256", tinySHA)
	if requests.Load() != before || strings.TrimSpace(again) != strings.TrimSpace(doneLine) {
		t.Errorf("second download: %d requests, output %q, want %q", requests.Load()-before, again, doneLine)
	}
	// A wrong digest: exit 1, nothing in the catalog or in models/.
	wrong := strings.Repeat("0", 64)
	_, errOut, code := p.run("--json", "models", "download", "hf:org/repo/tiny-q.gguf", "--id", "bad", "--sha256", wrong)
	if code != 1 || !strings.Contains(errOut, "expected sha256 "+wrong) || !strings.Contains(errOut, "got "+tinySHA) {
		t.Errorf("wrong --sha256: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "models", "bad.gguf")); err == nil {
		t.Error("the mismatching file was kept")
	}
	var ms []struct{ ID string }
	p.jsonOut(&ms, "models", "list")
	if len(ms) != 1 || ms[0].ID != "tq" {
		t.Errorf("catalog = %+v", ms)
	}
	if _, _, code := p.run("models", "download", "hf:org/repo/tiny-q.gguf", "--sha256", "xyz"); code == 0 {
		t.Error("a malformed --sha256 was accepted")
	}
}

// models estimate --json: the same figures from a catalog id, a file: path
// and an hf: reference read by range requests; the KV cache holds ctx ×
// slots tokens.
func TestEstimateJSON(t *testing.T) {
	hub, _ := hubServer(t)
	p := newPool(t)
	p.env = []string{"HF_ENDPOINT=" + hub.URL}
	p.ok("models", "download", "file:"+tinyPath)
	type estimate struct {
		WeightsBytes  uint64 `json:"weights_bytes"`
		KVBytes       uint64 `json:"kv_bytes"`
		OverheadBytes uint64 `json:"overhead_bytes"`
		TotalBytes    uint64 `json:"total_bytes"`
		RAMBytes      uint64 `json:"ram_bytes"`
		VRAMBytes     uint64 `json:"vram_bytes"`
		Method        string `json:"method"`
		SizeBytes     int64  `json:"size_bytes"`
	}
	get := func(src string, ctx, slots int) estimate {
		var e estimate
		strictJSON(t, p.ok("--json", "models", "estimate", src, "--ctx", fmt.Sprint(ctx), "--slots", fmt.Sprint(slots)), &e)
		return e
	}
	byID := get("tiny", 256, 2)
	if byID.Method != "gguf-parser" || byID.WeightsBytes == 0 || byID.KVBytes == 0 ||
		byID.TotalBytes != byID.WeightsBytes+byID.KVBytes+byID.OverheadBytes || byID.RAMBytes == 0 || byID.VRAMBytes == 0 || byID.SizeBytes <= 0 {
		t.Fatalf("estimate tiny = %+v", byID)
	}
	if f, h := get("file:"+tinyPath, 256, 2), get("hf:org/repo/tiny-q.gguf", 256, 2); f != byID || h != byID {
		t.Errorf("file: %+v, hf: %+v, id %+v", f, h, byID)
	}
	if four := get("tiny", 256, 4); four.KVBytes != 2*byID.KVBytes {
		t.Errorf("KV for 4 slots %d, for 2 slots %d", four.KVBytes, byID.KVBytes)
	}
	for _, bad := range [][]string{{"nope"}, {"hf:org/repo/missing.gguf"}, {"tiny", "--slots", "0"}, {"tiny", "--ctx", "-1"}} {
		if _, _, code := p.run(append([]string{"--json", "models", "estimate"}, bad...)...); code == 0 {
			t.Errorf("estimate %v: exit 0", bad)
		}
	}
}
