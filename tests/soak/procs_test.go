package soak

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llorch/llorch/core/testkit"
)

// proc is one llorch child process (see testkit.Proc) and what the fault
// loop did to it. Only the fault loop (the test goroutine) touches a proc
// after it started.
type proc struct {
	*testkit.Proc // Name: w1#3, orchestrator#2

	killed  bool // we sent SIGKILL (an exit is expected)
	stopped bool // we sent SIGSTOP and no SIGCONT yet
}

// startProc starts bin with args, its stdout and stderr in logPath, in its
// own group (a kill reaches all of it), killed with the test binary too (a
// go test timeout runs no cleanup).
func startProc(name, bin, logPath string, args ...string) (*proc, error) {
	p, err := testkit.StartProc(name, bin, logPath, args...)
	if err != nil {
		return nil, err
	}
	return &proc{Proc: p}, nil
}

// kill sends SIGKILL to the group and waits until the process is reaped.
func (p *proc) kill() error {
	p.killed = true
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -9 %s: %w", p.Name, err)
	}
	select {
	case <-p.Done():
		p.stopped = false
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s not reaped 10s after SIGKILL", p.Name)
	}
}

// stop sends SIGSTOP; cont sends SIGCONT.
func (p *proc) stop() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s: %w", p.Name, err)
	}
	p.stopped = true
	return nil
}

func (p *proc) cont() error {
	if err := p.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGCONT %s: %w", p.Name, err)
	}
	p.stopped = false
	return nil
}

// logFindings scans the log for what must never be there: data races the
// race detector reported, panics, Go runtime fatal errors. It also counts
// lines logged at level ERROR, which are reported, not failures.
func (p *proc) logFindings() (bad []string, errorLines int) {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return []string{fmt.Sprintf("%s: cannot read its log: %v", p.Name, err)}, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.Contains(line, "WARNING: DATA RACE"),
			strings.HasPrefix(line, "panic: "),
			strings.HasPrefix(line, "fatal error: "):
			bad = append(bad, fmt.Sprintf("%s: log line %d: %s (log %s)", p.Name, n, line, p.LogPath))
		case strings.Contains(line, "level=ERROR"):
			errorLines++
		}
	}
	return bad, errorLines
}

// orchestrator is the `llorch orchestrate` process and its restarts: always
// the same data dir and, after the first start, the same address, so workers
// and clients find it again.
type orchestrator struct {
	bin, dir, dataDir string
	listen            string // 127.0.0.1:0 until the first start bound a port
	url               string
	p                 *proc
	procs             []*proc         // every incarnation, oldest first
	startups          []time.Duration // each start until /healthz answered 200
}

// orchestratorArgs are the flags of every incarnation: short health
// timeouts so lost and frozen workers are noticed within seconds.
var orchestratorArgs = []string{
	"--heartbeat-timeout", "2s", "--dead-after", "5s", "--attempt-idle-timeout", "3s",
	"--result-ttl", resultTTL.String(), "--log-level", "info",
}

// start starts an incarnation and waits until /healthz answers 200. A
// restart binds the first one's address; if something took the port in
// the meantime the bind fails and is retried for a while.
func (o *orchestrator) start(ctx context.Context) error {
	addrFile := filepath.Join(o.dir, "orchestrator.addr")
	deadline := time.Now().Add(30 * time.Second)
	for try := 1; ; try++ {
		_ = os.Remove(addrFile)
		n := len(o.procs) + 1
		args := append([]string{"orchestrate", "--listen", o.listen, "--addr-file", addrFile, "--data-dir", o.dataDir}, orchestratorArgs...)
		p, err := startProc(fmt.Sprintf("orchestrator#%d", n), o.bin, filepath.Join(o.dir, fmt.Sprintf("orchestrator-%d.log", n)), args...)
		if err != nil {
			return err
		}
		o.procs = append(o.procs, p)
		url, err := p.WaitAddr(ctx, addrFile, deadline)
		if err == nil {
			if o.url != "" && url != o.url {
				return fmt.Errorf("%s listens on %s, want %s", p.Name, url, o.url)
			}
			o.url, o.listen, o.p = url, strings.TrimPrefix(url, "http://"), p
			if err := waitHealthy(ctx, url, p, deadline); err != nil {
				return err
			}
			o.startups = append(o.startups, time.Since(p.Started))
			return nil
		}
		if !p.Exited() || time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("%w\n%s", err, p.Tail(20))
		}
		// It exited before binding (the port was taken): try again.
		p.killed = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitHealthy polls url/healthz until it answers 200.
func waitHealthy(ctx context.Context, url string, p *proc, deadline time.Time) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /healthz not 200 (%v)", p.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.Done():
			return fmt.Errorf("%s exited (%v) before /healthz answered\n%s", p.Name, p.Err(), p.Tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// worker is one `llorch worker` id and its successive processes: a
// restarted worker keeps its id and gets a new port.
type worker struct {
	id    string
	p     *proc   // the current process; nil while down
	procs []*proc // every process, oldest first
}

func (w *worker) up() bool { return w.p != nil && !w.p.stopped }

// startWorker starts a process for w on a port the OS chooses. It does not
// wait: the worker registers with the orchestrator once its model loaded.
func startWorker(bin, model, dir, orchURL string, w *worker) error {
	n := len(w.procs) + 1
	args := []string{"worker", "--backend", "cpu", "--model", model, "--model-id", "tiny",
		"--port", "0", "--addr-file", filepath.Join(dir, fmt.Sprintf("%s-%d.addr", w.id, n)),
		"--slots", "2", "--threads", "1", "--ctx", "2048", "--heartbeat", "200ms",
		"--orchestrator", orchURL, "--worker-id", w.id, "--log-level", "info"}
	p, err := startProc(fmt.Sprintf("%s#%d", w.id, n), bin, filepath.Join(dir, fmt.Sprintf("%s-%d.log", w.id, n)), args...)
	if err != nil {
		return err
	}
	w.p = p
	w.procs = append(w.procs, p)
	return nil
}

// metrics reads a Prometheus text exposition into series → value (the
// series as written, name and labels).
func metrics(ctx context.Context, hc *http.Client, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
