package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/orchestrator"
	"github.com/llorch/llorch/core/store"
)

// fleetOrch is a real orchestrator in this process; its HTTP goes through a
// handler that records every request that is not a GET.
type fleetOrch struct {
	URL    string
	client *orchclient.Client
	mu     sync.Mutex
	writes []string
}

func (o *fleetOrch) takeWrites() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.writes
	o.writes = nil
	return w
}

func startFleetOrch(t *testing.T) *fleetOrch {
	t.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	srv, err := orchestrator.New(orchestrator.Config{Keys: []orchestrator.Key{{Secret: ctlKey, Role: orchestrator.RoleAdmin, Name: "ctl"}}},
		orchestrator.Deps{Log: slog.New(slog.NewTextHandler(&logs, nil)), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	// Serve runs the orchestrator's loops; requests come through the
	// recording server in front of its handler.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, ln) }()
	o := &fleetOrch{}
	h := srv.Handler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			o.mu.Lock()
			o.writes = append(o.writes, r.Method+" "+r.URL.Path)
			o.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		front.Close()
		cancel()
		<-done
		st.Close()
		if t.Failed() {
			t.Logf("orchestrator log:\n%s", logs.String())
		}
	})
	o.URL = front.URL
	if o.client, err = orchclient.New(front.URL, ctlKey, nil); err != nil {
		t.Fatal(err)
	}
	return o
}

// lockedBuffer is a bytes.Buffer safe for the orchestrator's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fleetCtl runs `llorch ctl fleet ARGS --orchestrator URL --api-key K` with
// stdin and returns stdout, stderr and the exit code.
func (o *fleetOrch) ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := ctl(append(append([]string{"fleet"}, args...), "--orchestrator", o.URL, "--api-key", ctlKey)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), exitCode(err)
}

// fleetYAML is a fleet file with a local pool in dir (its llorch the test
// binary) and models that start nothing (min_replicas 0).
func fleetYAML(dir, tinySlots string, withOld bool) string {
	s := fmt.Sprintf(`pools:
  - name: here
    transport: local
    pool_dir: %s
    llorch_path: %s
    labels: {zone: a}
models:
  - id: tiny
    source: file:%s
    min_replicas: 0
    slots: %s
    pools: [here]
`, filepath.Join(dir, "pool"), kit.Bin, kit.Tiny, tinySlots)
	if withOld {
		s += `  - id: old
    source: file:/nowhere/old.gguf
    min_replicas: 0
    idle_ttl: 90s
`
	}
	return s
}

func writeFile(t *testing.T, path, s string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFleetDiffApplyPrune(t *testing.T) {
	o := startFleetOrch(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "fleet.yaml"), fleetYAML(dir, "4", true))

	// diff: the creates, pools first; nothing written; exit 0, or 2 with
	// --detailed-exitcode.
	out, errs, code := o.ctl(t, "", "diff", "-f", file)
	if code != 0 || !strings.HasPrefix(out, "+ pool here (transport local, ") || !strings.Contains(out, "\n+ model tiny (source file:") ||
		!strings.Contains(out, "\n+ model old (") || !strings.HasSuffix(out, "plan: 3 to create, 0 to update, 0 to delete\n") {
		t.Fatalf("diff: exit %d\n%s%s", code, out, errs)
	}
	if _, _, code := o.ctl(t, "", "diff", "-f", file, "--detailed-exitcode"); code != 2 {
		t.Errorf("diff --detailed-exitcode with changes: exit %d", code)
	}
	// apply without --yes and without a terminal: refused, nothing written.
	out, errs, code = o.ctl(t, "", "apply", "-f", file)
	if code != 1 || !strings.Contains(errs, "--yes") || !strings.Contains(out, "+ model tiny") {
		t.Fatalf("apply without --yes: exit %d\n%s%s", code, out, errs)
	}
	if w := o.takeWrites(); len(w) != 0 {
		t.Fatalf("diff and a refused apply wrote: %v", w)
	}

	// apply from stdin.
	out, errs, code = o.ctl(t, fleetYAML(dir, "4", true), "apply", "-f", "-", "--yes")
	if code != 0 || !strings.Contains(out, "created pool here\ncreated model tiny\ncreated model old\n") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	if w := strings.Join(o.takeWrites(), ","); w != "POST /v2/pools,PUT /v2/models/tiny,PUT /v2/models/old" {
		t.Errorf("apply wrote %s", w)
	}
	ctx := context.Background()
	m, err := o.client.Model(ctx, "tiny")
	if err != nil || m.Source != "file:"+kit.Tiny || m.Slots != 4 || m.MinReplicas != 0 || len(m.Pools) != 1 {
		t.Fatalf("model tiny after apply: %+v %v", m, err)
	}
	p, err := o.client.Pool(ctx, "here")
	if err != nil || p.Transport != api.TransportLocal || p.Labels["zone"] != "a" {
		t.Fatalf("pool here after apply: %+v %v", p, err)
	}

	// apply again: no changes, no writes.
	out, errs, code = o.ctl(t, "", "apply", "-f", file)
	if code != 0 || out != "no changes\n" {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, errs)
	}
	if _, _, code := o.ctl(t, "", "diff", "-f", file, "--detailed-exitcode"); code != 0 {
		t.Errorf("diff --detailed-exitcode without changes: exit %d", code)
	}
	if w := o.takeWrites(); len(w) != 0 {
		t.Fatalf("second apply wrote: %v", w)
	}

	// One field changed: one update.
	writeFile(t, file, fleetYAML(dir, "8", true))
	out, errs, code = o.ctl(t, "", "diff", "-f", file)
	if code != 0 || out != "~ model tiny: slots: 4 → 8\nplan: 0 to create, 1 to update, 0 to delete\n" {
		t.Fatalf("diff after a change: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code = o.ctl(t, "", "apply", "-f", file, "--yes"); code != 0 || !strings.Contains(out, "updated model tiny\n") {
		t.Fatalf("apply of a change: exit %d\n%s%s", code, out, errs)
	}
	if w := strings.Join(o.takeWrites(), ","); w != "PUT /v2/models/tiny" {
		t.Errorf("apply of a change wrote %s", w)
	}

	// A model gone from the file is kept without --prune and deleted with it.
	writeFile(t, file, fleetYAML(dir, "8", false))
	out, errs, code = o.ctl(t, "", "apply", "-f", file, "--yes")
	if code != 0 || out != "no changes\nnot in the file, kept (--prune deletes them): model old\n" {
		t.Fatalf("apply without prune: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = o.ctl(t, "", "apply", "-f", file, "--yes", "--prune")
	if code != 0 || !strings.Contains(out, "- model old\n") || !strings.Contains(out, "deleted model old\n") {
		t.Fatalf("apply --prune: exit %d\n%s%s", code, out, errs)
	}
	if w := strings.Join(o.takeWrites(), ","); w != "DELETE /v2/models/old" {
		t.Errorf("prune wrote %s", w)
	}
	models, err := o.client.Models(ctx)
	if err != nil || len(models) != 1 || models[0].ID != "tiny" {
		t.Fatalf("models after prune: %+v %v", models, err)
	}

	// status: tables, and JSON with pools, models and events.
	out, errs, code = o.ctl(t, "", "status")
	if code != 0 || !strings.Contains(out, "MODEL") || !strings.Contains(out, "\ntiny ") || !strings.Contains(out, "\nhere ") ||
		!strings.Contains(out, "EVENT") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = o.ctl(t, "", "status", "--json")
	var st struct {
		Pools  []api.PoolView
		Models []api.ModelView
		Events []api.FleetEvent
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Pools) != 1 || len(st.Models) != 1 || st.Events == nil {
		t.Fatalf("status --json: exit %d %v\n%s%s", code, err, out, errs)
	}
}

func TestFleetBadFile(t *testing.T) {
	o := startFleetOrch(t)
	file := writeFile(t, filepath.Join(t.TempDir(), "fleet.yaml"), "models:\n  - id: a\n    source: file:/a.gguf\n    slot: 8\n")
	for _, args := range [][]string{{"diff"}, {"apply", "--yes"}} {
		_, errs, code := o.ctl(t, "", append(args, "-f", file)...)
		if code != 1 || !strings.Contains(errs, file) || !strings.Contains(errs, `models[0] "a": unknown field "slot"`) {
			t.Errorf("%v of a bad file: exit %d\n%s", args, code, errs)
		}
	}
	if _, errs, code := o.ctl(t, "", "diff", "-f", filepath.Join(t.TempDir(), "none.yaml")); code != 1 || !strings.Contains(errs, "none.yaml") {
		t.Errorf("missing file: exit %d\n%s", code, errs)
	}
	if w := o.takeWrites(); len(w) != 0 {
		t.Errorf("bad files wrote: %v", w)
	}
}
