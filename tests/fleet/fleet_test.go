package fleet

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/remote/sshtest"
)

// startLimit bounds one cold start of the tiny model (inventory, download,
// spawn of a -race build, load, register) on a busy 2-core machine.
const startLimit = 2 * time.Minute

// tinySpec declares the tiny model from source with small slots and ctx.
func tinySpec(id, source, sum string, minReplicas int, pools ...string) api.ModelSpec {
	return api.ModelSpec{ID: id, Source: source, SHA256: sum, MinReplicas: minReplicas, Ctx: 256, Slots: 2, Pools: pools}
}

func eventsOf(evs []api.FleetEvent, kind, model string) []api.FleetEvent {
	var out []api.FleetEvent
	for _, e := range evs {
		if e.Kind == kind && (model == "" || e.Model == model) {
			out = append(out, e)
		}
	}
	return out
}

func kinds(evs []api.FleetEvent) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  #%d %s pool=%s model=%s worker=%s: %s", e.Seq, e.Kind, e.Pool, e.Model, e.Worker, e.Reason)
	}
	return b.String()
}

// 1. A task for a declared model with no worker waits (queued, reason
// starting, with the step) while a worker starts on the local pool, then
// streams; the model shows one ready replica and the events tell the start.
func TestOnDemandStart(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "p1")
	o := startOrch(t, h, orchOpts{})
	o.putPool(localPool("p1", dir))
	o.waitPoolOK("p1")
	o.putModel(tinySpec("tiny", hfSource("tiny.gguf"), sum, 0))
	if v := o.model("tiny"); v.Replicas.Ready != 0 || v.Replicas.Starting != 0 {
		t.Fatalf("min_replicas 0: replicas before any task %+v", v.Replicas)
	}

	evs, ttft := o.stream(task("tiny", 8), startLimit)
	started := checkCompleted(t, evs, 8)
	var steps []string
	for _, ev := range evs {
		if q := ev.Queued; q != nil && q.Reason == "starting" {
			if q.Step == "" || q.Pool != "p1" {
				t.Errorf("queued while starting without a step or pool: %+v", q)
			}
			if len(steps) == 0 || steps[len(steps)-1] != q.Step {
				steps = append(steps, q.Step)
			}
		}
	}
	if len(steps) == 0 {
		t.Fatalf("no queued event with reason starting before the tokens: %s", names(evs))
	}
	t.Logf("steps seen by the waiting client: %v; first token after %s", steps, ttft.Round(time.Millisecond))

	// The task may run as soon as the worker registered, a moment before
	// the fleet marks the replica ready.
	v := o.waitReady("tiny", 1, time.Minute)
	if v.Replicas.Ready != 1 || len(v.Workers) != 1 || v.Workers[0].Pool != "p1" || v.Workers[0].WorkerID != started.WorkerID || v.State != api.ModelReady {
		t.Errorf("GET /v2/models/tiny = %s %+v %+v; want 1 ready replica on p1, worker %s", v.State, v.Replicas, v.Workers, started.WorkerID)
	}
	ms, err := o.c.Models(o.ctx())
	if err != nil || len(ms) != 1 || ms[0].Replicas.Ready != 1 {
		t.Errorf("GET /v2/models = %+v, %v", ms, err)
	}
	fe := o.events()
	for _, k := range []string{api.EventDownload, api.EventDownloaded, api.EventSpawn, api.EventReady} {
		if len(eventsOf(fe, k, "tiny")) != 1 {
			t.Errorf("want one %s event for tiny; events:%s", k, kinds(fe))
		}
	}
	if r := eventsOf(fe, api.EventReady, "tiny"); len(r) == 1 {
		for _, part := range []string{"inventory", "download", "load", "register"} {
			if !strings.Contains(r[0].Reason, part) {
				t.Errorf("ready reason %q does not name %s", r[0].Reason, part)
			}
		}
		t.Logf("tiny cold start (local pool): %s; time to first token %s", r[0].Reason, ttft.Round(time.Millisecond))
	}
}

// 2. Two ssh pools on the loopback sshd, a model with min_replicas 2: one
// worker on each pool.
func TestTwoReplicasOnTwoSSHPools(t *testing.T) {
	srv := sshtest.Start(t)
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dirA, dirB := poolDir(t, "host-a"), poolDir(t, "host-b")
	o := startOrch(t, h, orchOpts{args: sshArgs(t, srv, srv)})
	o.putPool(sshPool("a", dirA, srv))
	o.putPool(sshPool("b", dirB, srv))
	o.waitPoolOK("a")
	o.waitPoolOK("b")
	spec := tinySpec("tiny", h.urlSource("tiny.gguf"), sum, 2)
	o.putModel(spec)
	v := o.waitReady("tiny", 2, 2*startLimit)
	pools := []string{v.Workers[0].Pool, v.Workers[1].Pool}
	slices.Sort(pools)
	if !slices.Equal(pools, []string{"a", "b"}) {
		t.Fatalf("replicas on pools %v, want one on a and one on b: %+v", pools, v.Workers)
	}
	for _, dir := range []string{dirA, dirB} {
		if alive := aliveWorkers(poolStatus(t, dir)); len(alive) != 1 || alive[0].Model != "tiny" {
			t.Errorf("pool dir %s: alive workers %+v, want one of tiny", dir, alive)
		}
	}
	evs, _ := o.stream(task("tiny", 4), time.Minute)
	checkCompleted(t, evs, 4)
}

// 3. A fleet worker killed with -9: a crash event, a replacement becomes
// ready, and a task afterwards succeeds on it.
func TestKilledWorkerIsReplaced(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "p1")
	o := startOrch(t, h, orchOpts{})
	o.putPool(localPool("p1", dir))
	o.waitPoolOK("p1")
	o.putModel(tinySpec("tiny", hfSource("tiny.gguf"), sum, 1))
	v := o.waitReady("tiny", 1, startLimit)
	victim := v.Workers[0].WorkerID

	inv, err := o.c.RefreshPool(o.ctx(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	pid := 0
	if inv.Inventory != nil {
		for _, w := range inv.Inventory.Workers {
			if w.ID == victim && w.Alive {
				pid = w.PID
			}
		}
	}
	if pid == 0 {
		t.Fatalf("worker %s is not alive in pool p1's inventory: %+v", victim, inv.Inventory)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	waitFor(t, time.Minute, "a crash event for "+victim, func() (bool, string) {
		for _, e := range eventsOf(o.events(), api.EventCrash, "tiny") {
			if e.Worker == victim {
				return true, ""
			}
		}
		return false, kinds(o.events())
	})
	var replacement string
	waitFor(t, startLimit, "a ready replacement", func() (bool, string) {
		v := o.model("tiny")
		if v.Replicas.Ready == 1 && len(v.Workers) == 1 && v.Workers[0].WorkerID != victim {
			replacement = v.Workers[0].WorkerID
			return true, ""
		}
		return false, fmt.Sprintf("%s %+v %+v", v.State, v.Replicas, v.Workers)
	})
	evs, _ := o.stream(task("tiny", 6), time.Minute)
	if s := checkCompleted(t, evs, 6); s.WorkerID != replacement {
		t.Errorf("the task ran on %s, want the replacement %s", s.WorkerID, replacement)
	}
	if alive := aliveWorkers(poolStatus(t, dir)); len(alive) != 1 || alive[0].ID != replacement {
		t.Errorf("alive workers on the pool %+v, want only %s", alive, replacement)
	}
}

// 4. A pool whose memory_limit_bytes is below the model's estimate: the
// model is unplaceable and a task for it is 503 NO_CAPACITY naming the need
// and the pool's free memory.
func TestFitRefusal(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "small")
	o := startOrch(t, h, orchOpts{})
	p := localPool("small", dir)
	p.MemoryLimitBytes = 1 << 20 // 1 MiB: the tiny model's KV cache alone is more
	o.putPool(p)
	o.waitPoolOK("small")
	o.putModel(tinySpec("tiny", hfSource("tiny.gguf"), sum, 1))
	var v api.ModelView
	waitFor(t, time.Minute, "model tiny unplaceable", func() (bool, string) {
		v = o.model("tiny")
		return v.State == api.ModelUnplaceable, v.State + " " + v.LastError
	})
	if v.Fit == nil || v.Fit.EstimateBytes <= p.MemoryLimitBytes {
		t.Fatalf("fit %+v: the estimate should exceed the pool's limit %d", v.Fit, p.MemoryLimitBytes)
	}
	_, err := o.c.Submit(o.ctx(), task("tiny", 4))
	var oe *orchclient.Error
	if !errors.As(err, &oe) || oe.Err == nil || oe.Status != http.StatusServiceUnavailable || oe.Err.Code != api.CodeNoCapacity {
		t.Fatalf("submit for an unplaceable model: %v; want 503 NO_CAPACITY", err)
	}
	msg := oe.Err.Message
	if !strings.Contains(msg, "needs") || !strings.Contains(msg, "pool small") || !strings.Contains(msg, "1.0 MiB") {
		t.Errorf("NO_CAPACITY message %q should name the need and pool small's free memory (1.0 MiB)", msg)
	}
	t.Logf("NO_CAPACITY: %s", msg)
	if alive := aliveWorkers(poolStatus(t, dir)); len(alive) != 0 {
		t.Errorf("workers started on a pool without room: %+v", alive)
	}
}

// 5. An ssh pool whose host key is not in the orchestrator's known_hosts:
// unreachable with the key's fingerprint in last_error; nothing started.
func TestUnknownHostKey(t *testing.T) {
	known, unknown := sshtest.Start(t), sshtest.Start(t)
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "stranger")
	o := startOrch(t, h, orchOpts{args: sshArgs(t, unknown, known)})
	o.putPool(sshPool("stranger", dir, unknown))
	var v api.PoolView
	waitFor(t, time.Minute, "pool stranger unreachable", func() (bool, string) {
		v = o.pool("stranger")
		return v.State == api.PoolUnreachable, v.State + " " + v.LastError
	})
	fp := ssh.FingerprintSHA256(unknown.HostPub)
	if !strings.Contains(v.LastError, fp) {
		t.Errorf("last_error %q does not name the host key's fingerprint %s", v.LastError, fp)
	}
	o.putModel(tinySpec("tiny", h.urlSource("tiny.gguf"), sum, 1, "stranger"))
	// A refresh on demand says the same, and the model gets no replica.
	if r, err := o.c.RefreshPool(o.ctx(), "stranger"); err != nil || r.State != api.PoolUnreachable || !strings.Contains(r.LastError, fp) {
		t.Errorf("refresh: %+v, %v", r, err)
	}
	if m := o.model("tiny"); m.Replicas.Ready+m.Replicas.Starting != 0 {
		t.Errorf("replicas on an unreachable pool: %+v", m)
	}
	if sp := eventsOf(o.events(), api.EventSpawn, ""); len(sp) != 0 {
		t.Errorf("spawn events: %s", kinds(sp))
	}
	if st := poolStatus(t, dir); len(st.Workers) != 0 || len(st.Models) != 0 {
		t.Errorf("the unknown host's pool dir was touched: %+v", st)
	}
}

// 6. The orchestrator killed with -9 while a replica loads, restarted on the
// same data dir and port: one worker for the model, and the model ready.
func TestOrchestratorKilledMidStart(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "p1")
	o := startOrch(t, h, orchOpts{})
	o.putPool(localPool("p1", dir))
	o.waitPoolOK("p1")
	o.putModel(tinySpec("tiny", hfSource("tiny.gguf"), sum, 1))
	waitFor(t, startLimit, "a replica of tiny loading", func() (bool, string) {
		v := o.model("tiny")
		for _, w := range v.Workers {
			if w.State == "loading" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s %+v", v.State, v.Workers)
	})
	o.kill()

	o2 := startOrch(t, h, orchOpts{dataDir: o.dataDir, port: o.port})
	v := o2.waitReady("tiny", 1, startLimit)
	var alive []api.PoolWorker
	waitFor(t, time.Minute, "one alive worker on the pool", func() (bool, string) {
		alive = aliveWorkers(poolStatus(t, dir))
		return len(alive) == 1, fmt.Sprintf("%+v", alive)
	})
	if alive[0].ID != v.Workers[0].WorkerID {
		t.Errorf("the pool runs %s, the orchestrator knows %s", alive[0].ID, v.Workers[0].WorkerID)
	}
	evs, _ := o2.stream(task("tiny", 4), time.Minute)
	checkCompleted(t, evs, 4)
	// Settled: still one replica and one process.
	if m := o2.model("tiny"); m.Replicas.Ready != 1 || m.Replicas.Starting != 0 {
		t.Errorf("after the task: %+v", m.Replicas)
	}
	if alive := aliveWorkers(poolStatus(t, dir)); len(alive) != 1 {
		t.Errorf("alive workers after the task: %+v", alive)
	}
	t.Logf("events after the restart:%s", kinds(o2.events()))
}

// 7. `llorch ctl fleet apply -f FILE --yes` twice: the second run changes
// nothing.
func TestFleetApplyTwice(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "p1")
	o := startOrch(t, h, orchOpts{})
	file := filepath.Join(t.TempDir(), "fleet.yaml")
	body := fmt.Sprintf(`pools:
  - name: p1
    transport: local
    llorch_path: %s
    pool_dir: %s
    labels: {zone: test}
models:
  - id: tiny
    source: %s
    sha256: %s
    min_replicas: 0
    max_replicas: 2
    ctx: 256
    slots: 2
    idle_ttl: 5m
`, kit.Bin, dir, hfSource("tiny.gguf"), sum)
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	apply := func() string {
		out, err := exec.Command(kit.Bin, "ctl", "fleet", "apply", "-f", file, "--yes", "--orchestrator", o.URL).CombinedOutput()
		if err != nil {
			t.Fatalf("ctl fleet apply: %v\n%s", err, out)
		}
		return string(out)
	}
	first := apply()
	if strings.Contains(first, "no changes") {
		t.Fatalf("first apply changed nothing:\n%s", first)
	}
	if _, err := o.c.Pool(o.ctx(), "p1"); err != nil {
		t.Fatalf("pool p1 after apply: %v", err)
	}
	if m := o.model("tiny"); m.MaxReplicas != 2 || m.Ctx != 256 || m.SHA256 != sum {
		t.Errorf("model after apply: %+v", m.ModelSpec)
	}
	second := apply()
	if !strings.HasPrefix(second, "no changes") {
		t.Errorf("second apply:\n%s\nwant no changes (first:\n%s)", second, first)
	}
	if out, err := exec.Command(kit.Bin, "ctl", "fleet", "diff", "-f", file, "--detailed-exitcode", "--orchestrator", o.URL).CombinedOutput(); err != nil {
		t.Errorf("ctl fleet diff after apply: %v\n%s", err, out)
	}
}

// 8. After a replica loaded and heartbeated, the model's fit has a learned
// correction and an actual; a later placement needs estimate × correction:
// a pool whose limit lies between the estimate and the need gets no
// replica, a pool with room does (or, when the correction is below 1, the
// pool whose limit lies between need and estimate does get one).
func TestLearnedCorrection(t *testing.T) {
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dirA, dirB := poolDir(t, "roomy"), poolDir(t, "tight")
	o := startOrch(t, h, orchOpts{})
	o.putPool(localPool("roomy", dirA))
	o.waitPoolOK("roomy")
	spec := tinySpec("tiny", hfSource("tiny.gguf"), sum, 1)
	spec.MaxReplicas = 2
	o.putModel(spec)
	o.waitReady("tiny", 1, startLimit)
	var fit api.ModelFit
	waitFor(t, time.Minute, "a learned fit", func() (bool, string) {
		v := o.model("tiny")
		if v.Fit == nil {
			return false, "no fit"
		}
		fit = *v.Fit
		return fit.ActualBytes > 0 && fit.Correction != 1, fmt.Sprintf("%+v", fit)
	})
	if fit.EstimateBytes == 0 || fit.NeedBytes != uint64(float64(fit.EstimateBytes)*fit.Correction) {
		t.Fatalf("fit %+v: need should be estimate × correction", fit)
	}
	t.Logf("tiny (ctx 256 × 2 slots): estimate %d, actual %d, correction %.3f, need %d", fit.EstimateBytes, fit.ActualBytes, fit.Correction, fit.NeedBytes)

	// The tight pool's limit lies halfway between the estimate and the need.
	lo, hi := min(fit.EstimateBytes, fit.NeedBytes), max(fit.EstimateBytes, fit.NeedBytes)
	tight := localPool("tight", dirB)
	tight.MemoryLimitBytes = lo + (hi-lo)/2
	o.putPool(tight)
	o.waitPoolOK("tight")
	spec.MinReplicas = 2
	spec.Pools = []string{"roomy", "tight"}
	o.putModel(spec)
	v := o.waitReady("tiny", 2, startLimit)
	onTight := 0
	for _, w := range v.Workers {
		if w.Pool == "tight" {
			onTight++
		}
	}
	if fit.Correction > 1 && onTight != 0 {
		t.Errorf("correction %.3f: a replica went to pool tight (limit %d < need %d): %+v", fit.Correction, tight.MemoryLimitBytes, fit.NeedBytes, v.Workers)
	}
	if fit.Correction < 1 && onTight != 1 {
		t.Errorf("correction %.3f: pool tight (limit %d ≥ need %d) should get the second replica (spread): %+v", fit.Correction, tight.MemoryLimitBytes, fit.NeedBytes, v.Workers)
	}
	if alive := aliveWorkers(poolStatus(t, dirB)); len(alive) != onTight {
		t.Errorf("pool dir tight runs %+v", alive)
	}
}

// 9. Bootstrap: an ssh pool whose host lacks llorch, declared with install,
// gets this build installed (the binary at llorch_path and lib/llorch next
// to it), then runs a model with it.
func TestInstallOnAPoolWithoutLlorch(t *testing.T) {
	srv := sshtest.Start(t)
	h := newHub(t)
	sum := h.add(t, "tiny.gguf", kit.Tiny)
	dir := poolDir(t, "bare")
	bin := filepath.Join(t.TempDir(), "bare-host", "bin", "llorch")
	o := startOrch(t, h, orchOpts{args: sshArgs(t, srv, srv)})
	p := sshPool("bare", dir, srv)
	p.LlorchPath, p.Install = bin, true
	o.putPool(p)
	o.waitPoolOK("bare")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("llorch was not installed at %s: %v", bin, err)
	}
	if ins := eventsOf(o.events(), api.EventInstall, ""); len(ins) != 1 || !strings.Contains(ins[0].Reason, "missing") {
		t.Fatalf("install events: %s", kinds(o.events()))
	}
	if v := o.pool("bare"); v.Inventory == nil || v.Inventory.Version == "" {
		t.Fatalf("inventory after the install: %+v", v)
	}
	o.putModel(tinySpec("tiny", h.urlSource("tiny.gguf"), sum, 1, "bare"))
	o.waitReady("tiny", 1, startLimit)
	alive := aliveWorkers(poolStatus(t, dir))
	if len(alive) != 1 {
		t.Fatalf("alive workers %+v", alive)
	}
	// The worker runs from the installed binary, not from this build's.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", alive[0].PID))
	if err != nil || exe != bin {
		t.Fatalf("worker runs %q (%v), want %s", exe, err, bin)
	}
	// A pool without install keeps failing, and says how to fix it.
	q := sshPool("bare2", poolDir(t, "bare2"), srv)
	q.LlorchPath = filepath.Join(t.TempDir(), "nothing", "llorch")
	o.putPool(q)
	waitFor(t, time.Minute, "pool bare2 in error", func() (bool, string) {
		v := o.pool("bare2")
		return v.State == api.PoolError && strings.Contains(v.LastError, "install"), v.State + ": " + v.LastError
	})
}
