package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/poolrun"
	"github.com/llorch/llorch/core/remote"
)

// poolHost is what the fleet does on a pool host: the pool's own commands
// (`llorch pool … --json`), over SSH or as a local child process.
type poolHost interface {
	Status(ctx context.Context) (api.PoolStatus, error)
	// Estimate is the memory a worker of s needs (bytes of RAM on CPU, of
	// VRAM on GPU backends), from the model's GGUF header.
	Estimate(ctx context.Context, s api.ModelSpec) (uint64, error)
	// Download puts s's model in the pool's catalog under s.ID.
	Download(ctx context.Context, s api.ModelSpec, progress func(done, total int64)) error
	// Spawn starts a worker and returns once it is loaded; a worker that
	// fails to load is a *spawnError with its log's last lines. Idempotent
	// by worker id.
	Spawn(ctx context.Context, r spawnRequest) (api.PoolWorker, error)
	// Stop stops a worker; an unknown id is not an error.
	Stop(ctx context.Context, workerID string) error
	// Logs returns the last n lines of a worker's log (kept after it ended).
	Logs(ctx context.Context, workerID string, n int) ([]string, error)
	// Install copies this build (binary and lib/llorch) to the host.
	Install(ctx context.Context) error
}

type spawnRequest struct {
	WorkerID     string
	Spec         api.ModelSpec
	Pool         string
	Orchestrator string
	Token        string
	GPU          int    // -1: none
	Host         string // the address the worker listens on
	// Progress, when set, hears the worker's load progress (0..1).
	Progress func(float64)
}

// spawnError is a worker that did not load.
type spawnError struct {
	msg string
	log []string
}

func (e *spawnError) Error() string { return e.msg }

var (
	// errUnreachable: the host could not be reached (SSH: refused, timed
	// out, authentication, an unknown or changed host key).
	errUnreachable = errors.New("unreachable")
	errNoLlorch    = poolrun.ErrNoLlorch
)

// cliHost runs the pool's commands through core/poolrun, over a connection
// kept per pool (an SSH handshake per command would cost a cold start one
// round trip after another).
type cliHost struct {
	t     poolrun.Target
	conns *conns
}

// newCLIHost returns the pools' commands over poolrun, and a func that
// closes the connections kept.
func newCLIHost(base remote.Config) (func(api.Pool) poolHost, func()) {
	cs := &conns{m: map[string]*keptConn{}}
	return func(p api.Pool) poolHost { return cliHost{t: poolrun.TargetOf(p, base), conns: cs} }, cs.close
}

func (cs *conns) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, kc := range cs.m {
		_ = kc.c.Close()
		delete(cs.m, k)
	}
}

// conns are the open connections to pools, by target. One unused for
// connIdle is closed at the next use of any.
type conns struct {
	mu sync.Mutex
	m  map[string]*keptConn
}

type keptConn struct {
	c    *poolrun.Conn
	used time.Time
}

const connIdle = 5 * time.Minute

func targetKey(t poolrun.Target) string {
	return strings.Join([]string{t.Transport, t.Host, t.LlorchPath, t.PoolDir}, "\x00")
}

// get returns the kept connection to t, or dials one.
func (cs *conns) get(ctx context.Context, t poolrun.Target) (*poolrun.Conn, bool, error) {
	key := targetKey(t)
	cs.mu.Lock()
	now := time.Now()
	for k, kc := range cs.m {
		if k != key && now.Sub(kc.used) > connIdle {
			_ = kc.c.Close()
			delete(cs.m, k)
		}
	}
	if kc, ok := cs.m[key]; ok {
		kc.used = now
		cs.mu.Unlock()
		return kc.c, true, nil
	}
	cs.mu.Unlock()
	c, err := poolrun.Dial(ctx, t)
	if err != nil {
		return nil, false, err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if kc, ok := cs.m[key]; ok { // another goroutine dialled meanwhile
		_ = c.Close()
		kc.used = now
		return kc.c, true, nil
	}
	cs.m[key] = &keptConn{c: c, used: now}
	return c, false, nil
}

// drop closes c if it is still the kept connection to t.
func (cs *conns) drop(t poolrun.Target, c *poolrun.Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if kc, ok := cs.m[targetKey(t)]; ok && kc.c == c {
		_ = kc.c.Close()
		delete(cs.m, targetKey(t))
	}
}

// with runs fn over the pool's connection. A kept connection that fails
// other than by the command's own exit status (the peer went away) is
// dropped and fn runs once more over a new one: every pool command the
// fleet runs is idempotent (spawn and download by id).
func (h cliHost) with(ctx context.Context, fn func(*poolrun.Conn) error) error {
	for {
		c, kept, err := h.conns.get(ctx, h.t)
		if err != nil {
			return fmt.Errorf("%w: %w", errUnreachable, err)
		}
		err = fn(c)
		var ee *poolrun.ExitError
		if err == nil || errors.As(err, &ee) || errors.Is(err, errNoLlorch) || ctx.Err() != nil {
			return err
		}
		h.conns.drop(h.t, c)
		if !kept {
			return err
		}
	}
}

func (h cliHost) Status(ctx context.Context) (st api.PoolStatus, err error) {
	err = h.with(ctx, func(c *poolrun.Conn) error { return c.PoolJSON(ctx, []string{"status"}, nil, &st) })
	return st, err
}

func (h cliHost) Estimate(ctx context.Context, s api.ModelSpec) (uint64, error) {
	var out struct {
		Total uint64 `json:"total_bytes"`
		RAM   uint64 `json:"ram_bytes"`
		VRAM  uint64 `json:"vram_bytes"`
	}
	args := []string{"models", "estimate", "--slots", strconv.Itoa(s.Slots)}
	if s.Ctx > 0 {
		args = append(args, "--ctx", strconv.Itoa(s.Ctx))
	}
	args = append(args, s.Source)
	err := h.with(ctx, func(c *poolrun.Conn) error { return c.PoolJSON(ctx, args, nil, &out) })
	if err != nil {
		return 0, err
	}
	if s.Backend != "cpu" && out.VRAM > 0 {
		return out.VRAM, nil
	}
	return max(out.Total, out.RAM), nil
}

func (h cliHost) Download(ctx context.Context, s api.ModelSpec, progress func(done, total int64)) error {
	args := []string{"--json", "models", "download", "--id", s.ID}
	if s.SHA256 != "" {
		args = append(args, "--sha256", s.SHA256)
	}
	args = append(args, s.Source)
	return h.with(ctx, func(c *poolrun.Conn) error {
		done := false
		out := &poolLines{event: func(ev poolEvent) {
			switch ev.Event {
			case "progress":
				progress(ev.Bytes, ev.Total)
			case "done":
				done = true
			}
		}}
		errs := &poolLines{}
		code, err := c.Pool(ctx, args, nil, out, errs)
		out.flush()
		errs.flush()
		switch {
		case err != nil:
			return err
		case code != 0:
			return fmt.Errorf("exit status %d: %s", code, strings.Join(errs.tail, "; "))
		case !done:
			return errors.New("the download ended without saying it was done")
		}
		return nil
	})
}

// spawnArgs is the pool command that starts r's worker, and its stdin (the
// token, never on the command line).
func spawnArgs(r spawnRequest) (args []string, stdin io.Reader) {
	args = []string{"--json", "worker", "spawn", "--id", r.WorkerID, "--model", r.Spec.ID, "--slots", strconv.Itoa(r.Spec.Slots),
		"--pool-name", r.Pool, "--orchestrator", r.Orchestrator}
	if r.Spec.Ctx > 0 {
		args = append(args, "--ctx", strconv.Itoa(r.Spec.Ctx))
	}
	if r.Spec.Embedding {
		args = append(args, "--embedding")
	}
	if r.GPU >= 0 {
		args = append(args, "--gpu", strconv.Itoa(r.GPU))
	}
	if r.Host != "" {
		args = append(args, "--host", r.Host)
	}
	if r.Token != "" {
		args = append(args, "--token-file", "-")
		stdin = strings.NewReader(r.Token + "\n")
	}
	return append(args, r.Spec.Backend), stdin
}

func (h cliHost) Spawn(ctx context.Context, r spawnRequest) (w api.PoolWorker, err error) {
	args, stdin := spawnArgs(r)
	errs := &poolLines{event: func(ev poolEvent) {
		if ev.Event == "progress" && r.Progress != nil {
			r.Progress(ev.Progress)
		}
	}}
	err = h.with(ctx, func(c *poolrun.Conn) error { return c.PoolJSONStderr(ctx, args, stdin, errs, &w) })
	errs.flush()
	var ee *poolrun.ExitError
	if errors.As(err, &ee) {
		lines := errs.tail
		if len(lines) == 0 {
			lines = []string{"(no output)"}
		}
		return w, &spawnError{msg: fmt.Sprintf("the worker did not start (exit status %d): %s", ee.Code, lines[len(lines)-1]), log: lines}
	}
	return w, err
}

// poolLines reads a pool command's output line by line as it arrives:
// NDJSON progress and done lines go to event (a progress out of 0..1 is
// dropped), the last 20 other lines
// are kept (an error, a worker's log). A line is cut at 4 KiB.
type poolLines struct {
	event   func(poolEvent)
	partial []byte
	tail    []string
}

// poolEvent is a progress or result line of `llorch pool … --json`.
type poolEvent struct {
	Event    string  `json:"event"`
	Progress float64 `json:"progress"` // spawn: the worker's load, 0..1
	Bytes    int64   `json:"bytes"`    // download: bytes in place of total
	Total    int64   `json:"total"`
}

func (p *poolLines) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.partial) < 4096 {
				p.partial = append(p.partial, b[:min(len(b), 4096-len(p.partial))]...)
			}
			break
		}
		if room := 4096 - len(p.partial); room > 0 {
			p.partial = append(p.partial, b[:min(i, room)]...)
		}
		p.line(p.partial)
		p.partial, b = p.partial[:0], b[i+1:]
	}
	return n, nil
}

// flush takes a last line without a newline.
func (p *poolLines) flush() {
	if len(p.partial) > 0 {
		p.line(p.partial)
		p.partial = nil
	}
}

func (p *poolLines) line(l []byte) {
	var ev poolEvent
	if len(l) > 0 && l[0] == '{' && json.Unmarshal(l, &ev) == nil && (ev.Event == "progress" || ev.Event == "done") {
		if p.event != nil && ev.Progress >= 0 && ev.Progress <= 1 {
			p.event(ev)
		}
		return
	}
	p.tail = append(p.tail, string(l))
	if len(p.tail) > 20 {
		p.tail = p.tail[len(p.tail)-20:]
	}
}

func (h cliHost) Stop(ctx context.Context, id string) error {
	return h.with(ctx, func(c *poolrun.Conn) error { return c.PoolJSON(ctx, []string{"worker", "stop", id}, nil, nil) })
}

func (h cliHost) Logs(ctx context.Context, id string, n int) ([]string, error) {
	var out struct {
		Lines []string `json:"lines"`
	}
	err := h.with(ctx, func(c *poolrun.Conn) error {
		return c.PoolJSON(ctx, []string{"worker", "logs", "--lines", strconv.Itoa(n), id}, nil, &out)
	})
	return out.Lines, err
}

func (h cliHost) Install(ctx context.Context) error {
	return h.with(ctx, func(c *poolrun.Conn) error {
		_, err := c.Install(ctx, poolrun.InstallOptions{Dest: h.t.LlorchPath})
		return err
	})
}
