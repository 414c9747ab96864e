package fleet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/remote/sshtest"
)

// TestFigures gathers the fleet's figures for the closing note; it runs only
// with LLORCH_FLEET_FIGURES=1 (minutes; the qwen05 synthetic models are
// written to the Makefile's .cache/models when absent):
//
//	LLORCH_FLEET_FIGURES=1 go test -count=1 -run TestFigures -v ./tests/fleet
//
// It uses a plain (non-race) build of llorch, so resident memory is not the
// race detector's. It logs (lines starting FIGURE) the cold start on
// loopback from the ready event's breakdown (inventory, download, load,
// register) and the time from submitting the first task to its first token,
// for the tiny model and qwen05 q8_0; and the memory estimate (`llorch pool
// models estimate`) against the worker's resident memory (/health rss_bytes)
// for qwen05 f16, q8_0 and q4_0.
func TestFigures(t *testing.T) {
	if os.Getenv("LLORCH_FLEET_FIGURES") != "1" {
		t.Skip("figures for the note: set LLORCH_FLEET_FIGURES=1")
	}
	bin := filepath.Join(t.TempDir(), "llorch")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/llorch/llorch").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(root, ".cache", "models")
	qwen := map[string]string{}
	for _, typ := range []string{"f16", "q8_0", "q4_0"} {
		path := filepath.Join(cache, "qwen05-"+typ+".gguf")
		if _, err := os.Stat(path); err != nil {
			t0 := time.Now()
			cmd := exec.Command("go", "run", "./tools/mkmodel", "-preset", "qwen05", "-type", typ, "-out", path)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mkmodel qwen05 %s: %v\n%s", typ, err, out)
			}
			t.Logf("wrote %s in %s", path, time.Since(t0).Round(time.Second))
		}
		qwen[typ] = path
	}

	h := newHub(t)
	srv := sshtest.Start(t)
	dir, sdir := poolDir(t, "p1"), poolDir(t, "s1")
	o := startOrch(t, h, orchOpts{bin: bin, args: sshArgs(t, srv, srv)})
	pool := localPool("p1", dir)
	pool.LlorchPath = bin
	o.putPool(pool)
	spool := sshPool("s1", sdir, srv)
	spool.LlorchPath = bin
	o.putPool(spool)
	o.waitPoolOK("p1")
	o.waitPoolOK("s1")

	// Cold starts: a task for a declared model with no worker, on the local
	// pool (hf: source through HF_ENDPOINT) and on the ssh pool (the hub's
	// direct URL: sshd passes no environment).
	for _, m := range []struct{ id, file, path, pool string }{
		{"tiny", "tiny.gguf", kit.Tiny, "p1"},
		{"qwen05-q8", "qwen05-q8_0.gguf", qwen["q8_0"], "p1"},
		{"tiny-ssh", "tiny.gguf", kit.Tiny, "s1"},
		{"qwen05-q8-ssh", "qwen05-q8_0.gguf", qwen["q8_0"], "s1"},
	} {
		sum := h.add(t, m.file, m.path)
		spec := api.ModelSpec{ID: m.id, Source: hfSource(m.file), SHA256: sum, Ctx: 2048, Slots: 2, Pools: []string{m.pool}}
		if m.pool == "s1" {
			spec.Source = h.urlSource(m.file)
		}
		o.putModel(spec)
		t0 := time.Now()
		evs, ttft := o.stream(task(m.id, 16), 10*time.Minute)
		checkCompleted(t, evs, 16)
		o.waitReady(m.id, 1, time.Minute)
		ready := eventsOf(o.events(), api.EventReady, m.id)
		if len(ready) != 1 {
			t.Fatalf("%s: ready events %s", m.id, kinds(ready))
		}
		// Where the time before the start went: the first fleet event of
		// the model (its download) marks the placement.
		var placed time.Duration
		for _, e := range o.events() {
			if e.Model == m.id && placed == 0 {
				placed = e.Time.Sub(t0)
			}
		}
		st, _ := os.Stat(m.path)
		t.Logf("FIGURE cold start %s (%.1f MB, pool %s, loopback hub): %s; submit to first token %s (first fleet event %s after the submit, ready event %s after it)",
			m.id, float64(st.Size())/1e6, m.pool, ready[0].Reason, ttft.Round(time.Millisecond), placed.Round(time.Millisecond), ready[0].Time.Sub(t0).Round(time.Millisecond))
		if err := o.c.DeleteModel(o.ctx(), m.id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "no worker left after the cold starts", func() (bool, string) {
		alive := append(aliveWorkers(poolStatus(t, dir)), aliveWorkers(poolStatus(t, sdir))...)
		return len(alive) == 0, fmt.Sprintf("%+v", alive)
	})

	// Estimate against resident memory, one quantization at a time.
	for _, typ := range []string{"f16", "q8_0", "q4_0"} {
		var est struct {
			Total   uint64 `json:"total_bytes"`
			Weights uint64 `json:"weights_bytes"`
			KV      uint64 `json:"kv_bytes"`
		}
		out, err := exec.Command(bin, "pool", "--pool-dir", dir, "--json", "models", "estimate", "--ctx", "2048", "--slots", "2", "file:"+qwen[typ]).Output()
		if err != nil {
			t.Fatalf("estimate %s: %v", typ, err)
		}
		if err := json.Unmarshal(out, &est); err != nil {
			t.Fatalf("estimate %s: %v\n%s", typ, err, out)
		}
		id := "qwen05-" + strings.ReplaceAll(typ, "_", "")
		sum := h.add(t, "qwen05-"+typ+".gguf", qwen[typ])
		o.putModel(api.ModelSpec{ID: id, Source: hfSource("qwen05-" + typ + ".gguf"), SHA256: sum, MinReplicas: 1, Ctx: 2048, Slots: 2, Pools: []string{"p1"}})
		v := o.waitReady(id, 1, 10*time.Minute)
		var rss uint64
		for _, w := range poolStatus(t, dir).Workers {
			if w.ID == v.Workers[0].WorkerID && w.Alive {
				var hl api.Health
				resp, err := http.Get(w.URL + "/health")
				if err != nil {
					t.Fatal(err)
				}
				err = json.NewDecoder(resp.Body).Decode(&hl)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				rss = hl.RSSBytes
			}
		}
		var fit api.ModelFit
		waitFor(t, time.Minute, id+" learned fit", func() (bool, string) {
			m := o.model(id)
			if m.Fit != nil {
				fit = *m.Fit
			}
			return fit.ActualBytes > 0, fmt.Sprintf("%+v", m.Fit)
		})
		st, _ := os.Stat(qwen[typ])
		t.Logf("FIGURE memory qwen05 %s (file %.0f MB, ctx 2048 × 2 slots): estimate %.0f MB (weights %.0f, KV %.0f); /health rss %.0f MB (rss/estimate %.2f); fleet fit: estimate %.0f MB, actual %.0f MB, correction %.3f",
			typ, float64(st.Size())/1e6, mb(est.Total), mb(est.Weights), mb(est.KV), mb(rss), float64(rss)/float64(max(est.Total, 1)),
			mb(fit.EstimateBytes), mb(fit.ActualBytes), fit.Correction)
		if err := o.c.DeleteModel(o.ctx(), id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, id+" stopped", func() (bool, string) {
			alive := aliveWorkers(poolStatus(t, dir))
			return len(alive) == 0, fmt.Sprintf("%+v", alive)
		})
	}
}

func mb(n uint64) float64 { return float64(n) / 1e6 }
