package workerd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/backends"
)

// pace lets a test hold a worker's decode loop: while held, every decode
// step waits until the test lets one through (step) or releases the hold. A
// slot whose job the test wants busy stays busy, however fast or slow the
// machine: no test depends on a generation outlasting what it does
// meanwhile. Health, cancels and new requests are answered while the loop is
// held; they only wait for the decode loop where they need a step.
type pace struct {
	mu      sync.Mutex
	held    bool
	resume  chan struct{} // closed when the hold ends
	waiting bool          // a step is waiting now
	parks   int           // steps that have waited so far
	steps   chan struct{} // one value lets one waiting step through
}

func newPace() *pace { return &pace{steps: make(chan struct{})} }

// wait is called by the decode loop before each step.
func (p *pace) wait() {
	p.mu.Lock()
	if !p.held {
		p.mu.Unlock()
		return
	}
	p.waiting = true
	p.parks++
	resume := p.resume
	p.mu.Unlock()
	select {
	case <-p.steps:
	case <-resume:
	}
	p.mu.Lock()
	p.waiting = false
	p.mu.Unlock()
}

// hold makes every later decode step wait (a step already decoding finishes).
func (p *pace) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held, p.resume = true, make(chan struct{})
	}
}

// release lets the loop run freely again.
func (p *pace) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held = false
		close(p.resume)
	}
}

func (p *pace) state() (waiting bool, parks int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting, p.parks
}

// parked waits until the held loop waits before a step: nothing is being
// decoded and no token is being sampled.
func (p *pace) parked(t *testing.T) {
	t.Helper()
	waitFor(t, 10*time.Second, "the decode loop to wait", func() bool { w, _ := p.state(); return w })
}

// step lets the parked loop decode exactly one step and waits until it has
// finished it and waits before the next (the loop must have more to do).
func (p *pace) step(t *testing.T) {
	t.Helper()
	_, n := p.state()
	if !p.tryStep(10 * time.Second) {
		t.Fatal("the decode loop did not ask for a step")
	}
	waitFor(t, 10*time.Second, "the decode step to finish", func() bool { w, k := p.state(); return w && k > n })
}

// tryStep lets one step through if the loop asks for one within d.
func (p *pace) tryStep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case p.steps <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// pacedModel is the real model whose contexts decode under a pace.
type pacedModel struct {
	backends.Model
	p *pace
}

func (m pacedModel) NewContext(cp backends.ContextParams) (backends.Context, error) {
	c, err := m.Model.NewContext(cp)
	if err != nil {
		return nil, err
	}
	return pacedContext{Context: c, p: m.p}, nil
}

func (m pacedModel) Device() (string, uint64) {
	if d, ok := m.Model.(backends.DeviceReporter); ok {
		return d.Device()
	}
	return "", 0
}

func (m pacedModel) NewEmbedder(p backends.EmbedParams) (backends.Embedder, error) {
	return m.Model.(backends.EmbedModel).NewEmbedder(p)
}

func (m pacedModel) CheckGrammar(gbnf string) error {
	return m.Model.(backends.GrammarChecker).CheckGrammar(gbnf)
}

type pacedContext struct {
	backends.Context
	p *pace
}

var _ backends.SeqCopier = pacedContext{}

func (c pacedContext) Decode(b *backends.Batch) error {
	c.p.wait()
	return c.Context.Decode(b)
}

// Own keeps the decode loop on the context's thread, as without the pace.
func (c pacedContext) Own(f func()) {
	if o, ok := c.Context.(interface{ Own(func()) }); ok {
		o.Own(f)
		return
	}
	f()
}

func (c pacedContext) Idle() {
	if i, ok := c.Context.(interface{ Idle() }); ok {
		i.Idle()
	}
}

func (c pacedContext) CopySeq(src, dst int) error {
	return c.Context.(backends.SeqCopier).CopySeq(src, dst)
}

// scrape reads a worker's /metrics as a map from series (name plus labels, as
// printed) to value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// metric returns one series of a scrape, failing the test when it is absent.
func metric(t *testing.T, m map[string]float64, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("metrics lack %s", series)
	}
	return v
}

// waitFor polls cond every few milliseconds until it holds, failing the test
// after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBusy waits until the worker reports n busy slots.
func waitBusy(t *testing.T, w *worker, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, strconv.Itoa(n)+" busy slots", func() bool {
		h, err := w.client.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return h.SlotsBusy == n
	})
}

// request sends body (if any) to url with method, with a bearer token when
// one is given, and returns the status, the headers and the whole answer.
func request(t testing.TB, method, url, token, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// post is request with POST.
func post(t testing.TB, url, token, body string) (int, http.Header, []byte) {
	t.Helper()
	return request(t, http.MethodPost, url, token, body)
}

// chunks posts a streaming /v1 request and decodes each of its data chunks
// into a T; the stream must answer 200 and end with [DONE], after which
// nothing may come.
func chunks[T any](t testing.TB, url, body string) []T {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, err := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s (%v)", resp.StatusCode, data, err)
	}
	var out []T
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if done {
			t.Fatalf("data after [DONE]: %s", data)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("bad chunk %q: %v", data, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Fatal("stream ended without [DONE]")
	}
	return out
}
