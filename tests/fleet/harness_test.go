// Package fleet holds the end-to-end tests of the orchestrator's fleet with
// real parts: the llorch binary built by testkit, `llorch orchestrate` as a
// child process (so a test can kill it with -9), pools driven through the
// pools' own commands (local child processes, or over a real OpenSSH server
// on loopback, core/remote/sshtest), and the tiny synthetic model served by a
// local HTTP server in the Hugging Face hub's layout.
//
// Every pool directory is cleaned up with `llorch pool worker stop --all`
// after the orchestrators of its test are gone, so no worker outlives a test.
package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/remote/sshtest"
	"github.com/llorch/llorch/core/testkit"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// workerToken is the secret the orchestrators share with the workers their
// pools spawn (passed to `pool worker spawn --token-file -`).
const workerToken = "fleet-e2e-worker-token"

// --- the hub ---

// hub serves model files in the Hugging Face layout
// (/ORG/REPO/resolve/main/FILE, with X-Linked-Etag the sha256) and the same
// files at /files/FILE for direct http:// sources (loopback http is allowed),
// which ssh pools use: the SSH session does not pass HF_ENDPOINT on.
type hub struct {
	*httptest.Server
	files map[string]hubFile
}

type hubFile struct {
	data []byte
	sum  string
}

func newHub(t testing.TB) *hub {
	t.Helper()
	h := &hub{files: map[string]hubFile{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

// add serves the file at path under name and returns its sha256.
func (h *hub) add(t testing.TB, name, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	sum := hex.EncodeToString(s[:])
	h.files[name] = hubFile{data: data, sum: sum}
	return sum
}

func (h *hub) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/org/repo/resolve/main/")
	if !ok {
		name, ok = strings.CutPrefix(r.URL.Path, "/files/")
	}
	f, found := h.files[name]
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Linked-Etag", `"`+f.sum+`"`)
	w.Header().Set("ETag", `"`+f.sum+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
}

// hfSource is the hf: reference of a served file (local pools: HF_ENDPOINT
// comes from the orchestrator's environment).
func hfSource(name string) string { return "hf:org/repo/" + name }

// urlSource is the direct URL of a served file.
func (h *hub) urlSource(name string) string { return h.URL + "/files/" + name }

// --- pools ---

// poolDir makes a pool directory and stops every worker spawned there when
// the test ends. Call it before starting the orchestrators of the test, so
// that they are killed first (cleanups run last-in first-out) and cannot
// start a worker again.
func poolDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := exec.Command(kit.Bin, "pool", "--pool-dir", dir, "worker", "stop", "--all", "--grace", "2s").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "no worker") {
			t.Logf("stopping the workers of %s: %v\n%s", dir, err, out)
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				t.Logf("worker log %s (last 3000 bytes):\n%s", l, tail(data, 3000))
			}
		}
	})
	return dir
}

func localPool(name, dir string) api.Pool {
	return api.Pool{Name: name, Transport: api.TransportLocal, LlorchPath: kit.Bin, PoolDir: dir}
}

func sshPool(name, dir string, s *sshtest.Server) api.Pool {
	return api.Pool{Name: name, Transport: api.TransportSSH, Host: s.User + "@" + s.Addr(), LlorchPath: kit.Bin, PoolDir: dir}
}

// poolStatus runs `llorch pool status --json` on dir directly: the pool's
// own view, independent of the orchestrator.
func poolStatus(t *testing.T, dir string) api.PoolStatus {
	t.Helper()
	var st api.PoolStatus
	out, err := exec.Command(kit.Bin, "pool", "--pool-dir", dir, "--json", "status").Output()
	if err != nil {
		t.Fatalf("pool status %s: %v", dir, err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("pool status %s: %v\n%s", dir, err, out)
	}
	return st
}

func aliveWorkers(st api.PoolStatus) []api.PoolWorker {
	var out []api.PoolWorker
	for _, w := range st.Workers {
		if w.Alive {
			out = append(out, w)
		}
	}
	return out
}

// --- ssh ---

// sshArgs are the orchestrator's flags for ssh pools: --known-hosts with
// the host keys of known (and no other), and -i the sshtest client key. The
// orchestrator's HOME is an empty directory (startOrch), so nothing of the
// user's ~/.ssh takes part.
func sshArgs(t *testing.T, client *sshtest.Server, known ...*sshtest.Server) []string {
	t.Helper()
	var lines strings.Builder
	for _, s := range known {
		lines.WriteString(s.HostKeyLine + "\n")
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--known-hosts", path, "-i", client.ClientKey}
}

// --- the orchestrator ---

// orch is a `llorch orchestrate` child process.
type orch struct {
	t       *testing.T
	c       *orchclient.Client
	URL     string
	port    int
	dataDir string
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

type orchOpts struct {
	bin     string // "" = kit.Bin
	dataDir string // "" = a new one
	port    int    // 0 = the OS's choice
	env     []string
	args    []string
}

// startOrch starts an orchestrator and waits until it answers /healthz. It
// is killed when the test ends; its log is printed if the test failed.
func startOrch(t *testing.T, h *hub, o orchOpts) *orch {
	t.Helper()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	addrFile := filepath.Join(t.TempDir(), "orch.addr")
	logf, err := os.CreateTemp(t.TempDir(), "orchestrator-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"orchestrate", "--listen", "127.0.0.1:" + strconv.Itoa(o.port), "--addr-file", addrFile,
		"--data-dir", o.dataDir, "--worker-token", workerToken, "--heartbeat-timeout", "2s", "--dead-after", "4s",
		"--log-level", "debug"}, o.args...)
	if o.bin == "" {
		o.bin = kit.Bin
	}
	cmd := exec.Command(o.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	env := append(os.Environ(), "HOME="+t.TempDir(), "SSH_AUTH_SOCK=")
	if h != nil {
		env = append(env, "HF_ENDPOINT="+h.URL)
	}
	cmd.Env = append(env, o.env...)
	// Killed with the test binary too (a go test timeout runs no cleanup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &orch{t: t, dataDir: o.dataDir, cmd: cmd, done: make(chan struct{}), logPath: logf.Name()}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(p.logPath)
			t.Logf("orchestrator log %s (last 20000 bytes):\n%s", p.logPath, tail(data, 20000))
		}
	})
	p.URL = testkit.WaitAddr(t, addrFile, p.done, time.Minute)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.URL, "http://"))
	p.port, _ = strconv.Atoi(port)
	if p.c, err = orchclient.New(p.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "orchestrator /healthz", func() (bool, string) {
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// kill sends SIGKILL to the orchestrator alone (the pool commands it runs
// and the workers they spawned are left, as after a crash) and reaps it.
func (o *orch) kill() {
	select {
	case <-o.done:
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGKILL)
	<-o.done
}

func (o *orch) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	o.t.Cleanup(cancel)
	return ctx
}

func (o *orch) putPool(p api.Pool) {
	o.t.Helper()
	if _, err := o.c.PutPool(o.ctx(), p); err != nil {
		o.t.Fatalf("PUT pool %s: %v", p.Name, err)
	}
}

func (o *orch) putModel(m api.ModelSpec) {
	o.t.Helper()
	if _, err := o.c.PutModel(o.ctx(), m); err != nil {
		o.t.Fatalf("PUT model %s: %v", m.ID, err)
	}
}

func (o *orch) model(id string) api.ModelView {
	o.t.Helper()
	v, err := o.c.Model(o.ctx(), id)
	if err != nil {
		o.t.Fatalf("GET model %s: %v", id, err)
	}
	return v
}

func (o *orch) pool(name string) api.PoolView {
	o.t.Helper()
	v, err := o.c.Pool(o.ctx(), name)
	if err != nil {
		o.t.Fatalf("GET pool %s: %v", name, err)
	}
	return v
}

func (o *orch) events() []api.FleetEvent {
	o.t.Helper()
	evs, err := o.c.FleetEvents(o.ctx(), 0, 1000)
	if err != nil {
		o.t.Fatalf("GET /v2/events: %v", err)
	}
	return evs
}

// waitPoolOK waits until the orchestrator has read the pool's inventory.
// A pool just put is refreshed on demand (POST /v2/pools/{name}/refresh):
// the fleet reads a new pool's inventory only at its next periodic refresh
// (--inventory-interval, 30 s by default).
func (o *orch) waitPoolOK(name string) {
	o.t.Helper()
	waitFor(o.t, time.Minute, "pool "+name+" ok", func() (bool, string) {
		v, err := o.c.RefreshPool(o.ctx(), name)
		if err != nil {
			return false, err.Error()
		}
		return v.State == api.PoolOK && v.Inventory != nil, v.State + " " + v.LastError
	})
}

// waitReady waits until model id has n ready replicas and none starting.
func (o *orch) waitReady(id string, n int, limit time.Duration) api.ModelView {
	o.t.Helper()
	var v api.ModelView
	waitFor(o.t, limit, fmt.Sprintf("model %s: %d ready replicas, none starting", id, n), func() (bool, string) {
		v = o.model(id)
		return v.Replicas.Ready == n && v.Replicas.Starting == 0, fmt.Sprintf("%s %+v %+v %s", v.State, v.Replicas, v.Workers, v.LastError)
	})
	return v
}

// stream submits req as a streamed task and reads its events to the
// terminal one.
func (o *orch) stream(req *api.TaskRequest, limit time.Duration) ([]api.Event, time.Duration) {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	t0 := time.Now()
	s, err := o.c.SubmitStream(ctx, req)
	if err != nil {
		o.t.Fatalf("submit (streamed) for %s: %v", req.Model, err)
	}
	defer s.Close()
	var evs []api.Event
	var ttft time.Duration
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			return evs, ttft
		}
		if err != nil {
			o.t.Fatalf("task %s stream after %d events: %v", s.TaskID, len(evs), err)
		}
		if ev.Token != nil && ttft == 0 {
			ttft = time.Since(t0)
		}
		evs = append(evs, ev)
		if ev.Terminal() {
			return evs, ttft
		}
	}
}

// task is a request for n tokens whatever the synthetic model's weights
// say (ignore_eos), with a fixed seed.
func task(model string, n int) *api.TaskRequest {
	req := &api.TaskRequest{Model: model}
	req.Prompt = "The fleet test says"
	req.MaxTokens = &n
	seed := int64(7)
	req.Seed = &seed
	req.IgnoreEOS = true
	return req
}

// checkCompleted fails the test unless evs ends with an end event after n
// tokens; it returns the started event.
func checkCompleted(t *testing.T, evs []api.Event, n int) *api.Started {
	t.Helper()
	var started *api.Started
	tokens := 0
	for _, ev := range evs {
		switch {
		case ev.Started != nil:
			started = ev.Started
		case ev.Token != nil:
			tokens++
		}
	}
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	last := evs[len(evs)-1]
	if last.End == nil {
		t.Fatalf("the stream ended with %s %+v, want end (events %s)", last.Name, last.Payload(), names(evs))
	}
	if started == nil || tokens != n || last.End.TokensOut != n || last.End.StopReason != api.StopMaxTokens {
		t.Fatalf("started %+v, %d tokens, end %+v; want %d tokens to MAX_TOKENS", started, tokens, last.End, n)
	}
	return started
}

func names(evs []api.Event) string {
	var b strings.Builder
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(ev.Name)
	}
	return b.String()
}

// --- waiting ---

// waitFor polls cond every 50 ms until it holds, failing the test after
// limit with the last state cond described.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, limit, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
