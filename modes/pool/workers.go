package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bind"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/supervise"
	"github.com/llorch/llorch/core/workerclient"
)

// envPoolDir marks every worker the pool starts, so cleanup can find strays.
const envPoolDir = "LLORCH_POOL_DIR"

func workerCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "worker",
		Usage: "spawn, list, stop and clean up this host's workers",
		Commands: []*cli.Command{
			spawnCommand(e),
			{
				Name:  "list",
				Usage: "list workers with liveness and /health",
				Action: func(ctx context.Context, _ *cli.Command) error {
					rows, err := e.workerRows(ctx)
					if err != nil {
						return exit1(err)
					}
					return e.printWorkers(rows)
				},
			},
			stopCommand(e),
			cleanupCommand(e),
			logsCommand(e),
		},
	}
}

func spawnCommand(e *env) *cli.Command {
	var (
		model, port, host, tokenFile string
		orchestrator, poolName, id   string
		gpu, slots, ctxSize          int
		wait                         time.Duration
		insecure, embedding          bool
	)
	return &cli.Command{
		Name:      "spawn",
		Usage:     "start a detached `llorch worker` and wait until it is ready",
		ArgsUsage: "BACKEND",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Usage: "model id or alias from the catalog (required)", Destination: &model},
			&cli.StringFlag{Name: "id", Usage: "worker id (default BACKEND-<8 hex>); if a live worker has it, wait for it and print it instead of starting another", Destination: &id},
			&cli.StringFlag{Name: "port", Value: "auto", Usage: "port, or auto for one the OS chooses when the worker binds (a busy port moves to the next free one)", Destination: &port},
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address the worker listens on (not loopback: needs --token-file or --insecure-no-auth)", Destination: &host},
			&cli.BoolFlag{Name: "insecure-no-auth", Usage: "let the worker listen on a non-loopback --host without a token", Destination: &insecure},
			&cli.IntFlag{Name: "gpu", Usage: "GPU index (cuda)", Destination: &gpu},
			&cli.IntFlag{Name: "slots", Value: 4, Usage: "parallel sequences", Destination: &slots},
			&cli.IntFlag{Name: "ctx", Usage: "context size per slot (default: the worker's)", Destination: &ctxSize},
			&cli.BoolFlag{Name: "embedding", Usage: "start an embedding worker (llorch worker --embedding): POST /v1/embeddings, no text generation", Destination: &embedding},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the worker's shared secret, - for stdin (passed in the environment, never on the command line)", Destination: &tokenFile},
			&cli.StringFlag{Name: "orchestrator", Usage: "orchestrator URL the worker registers with (and heartbeats to)", Destination: &orchestrator},
			&cli.StringFlag{Name: "pool-name", Usage: "pool name the worker reports to the orchestrator", Destination: &poolName},
			&cli.DurationFlag{Name: "wait", Value: 5 * time.Minute, Usage: "how long to wait for the worker to be ready", Destination: &wait},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			backend, err := oneArg(cmd, "backend")
			if err != nil {
				return err
			}
			if model == "" {
				return cli.Exit("pool: --model is required", 1)
			}
			if id != "" {
				if why := api.CheckID(id); why != "" {
					return cli.Exit("pool: --id "+why, 2)
				}
			}
			return exit1(e.spawn(ctx, spawnSpec{id: id, backend: backend, model: model, port: port, host: host, gpu: gpu,
				slots: slots, ctx: ctxSize, tokenFile: tokenFile, wait: wait, orchestrator: orchestrator, poolName: poolName, insecure: insecure, embedding: embedding}))
		},
	}
}

type spawnSpec struct {
	id, backend, model, port, host string
	tokenFile                      string
	orchestrator, poolName         string
	gpu, slots, ctx                int
	wait                           time.Duration
	insecure, embedding            bool
}

func (e *env) spawn(ctx context.Context, s spawnSpec) error {
	rep, err := e.backends(ctx)
	if err != nil {
		return err
	}
	b, known := rep.Backend(s.backend)
	if !known || !b.Available {
		reason := "unknown backend"
		if known {
			reason = b.Reason
		}
		return fmt.Errorf("pool: backend %q is not available on this host: %s (available: %s)", s.backend, reason, strings.Join(rep.Available(), ", "))
	}
	var m store.Model
	if err := e.withPool(func(db *store.Pool) (err error) { m, err = db.Model(s.model); return err }); err != nil {
		return notInCatalog(s.model, err)
	}
	id := s.id
	if id != "" {
		// One spawn of an id at a time: a second one waits here, then
		// finds the first one's worker.
		unlock, err := lockFile(ctx, filepath.Join(e.logsDir(), id+".spawn.lock"), "worker "+id, e.errOut)
		if err != nil {
			return err
		}
		defer unlock()
		var old store.Worker
		err = e.withPool(func(db *store.Pool) (err error) { old, err = db.Worker(id); return err })
		switch {
		case err == nil && supervise.Alive(supervise.Proc{PID: old.PID, StartTime: old.StartTime}):
			return e.awaitSpawned(ctx, old, supervise.Proc{PID: old.PID, StartTime: old.StartTime}, s.wait)
		case err == nil:
			if err := e.forget(id); err != nil { // the record of a dead process
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	} else if id, err = e.newWorkerID(s.backend); err != nil {
		return err
	}
	childEnv := []string{envPoolDir + "=" + e.dir}
	if s.tokenFile != "" {
		tok, err := readToken(s.tokenFile)
		if err != nil {
			return err
		}
		childEnv = append(childEnv, "LLORCH_WORKER_TOKEN="+tok)
	}
	p, err := pickPort(s.host, s.port)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("pool: cannot find the llorch binary: %w", err)
	}
	if err := os.MkdirAll(e.logsDir(), 0o700); err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	// The worker binds (port 0: the OS chooses, never a port picked here
	// and freed for someone else to take) and writes its URL to addrFile.
	addrFile := filepath.Join(e.logsDir(), id+".addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pool: %w", err)
	}
	args := []string{"worker", "--backend", s.backend, "--model", m.Path, "--model-id", m.ID, "--host", s.host,
		"--port", strconv.Itoa(p), "--addr-file", addrFile, "--slots", strconv.Itoa(s.slots), "--worker-id", id, "--gpu", strconv.Itoa(s.gpu)}
	if s.ctx > 0 {
		args = append(args, "--ctx", strconv.Itoa(s.ctx))
	}
	if s.orchestrator != "" {
		args = append(args, "--orchestrator", s.orchestrator)
	}
	if s.poolName != "" {
		args = append(args, "--pool", s.poolName)
	}
	if s.insecure {
		args = append(args, "--insecure-no-auth")
	}
	if s.embedding {
		args = append(args, "--embedding")
	}
	logPath := filepath.Join(e.logsDir(), id+".log")
	proc, err := supervise.Start(supervise.Spec{Path: exe, Args: args, Env: childEnv, Dir: e.dir, LogPath: logPath})
	if err != nil {
		return err
	}
	w := store.Worker{ID: id, PID: proc.PID, StartTime: proc.StartTime, AddrFile: addrFile,
		Model: m.ID, ModelPath: m.Path, Backend: s.backend, GPU: s.gpu, Slots: s.slots, LogPath: logPath, StartedAt: time.Now().UTC()}
	// Recorded at once, so that cleanup finds it even if this command dies
	// while waiting; until the URL is recorded, it is read from AddrFile.
	if err := e.withPool(func(db *store.Pool) error { return db.PutWorker(w) }); err != nil {
		_ = supervise.Kill(proc)
		return err
	}
	return e.awaitSpawned(ctx, w, proc, s.wait)
}

// awaitSpawned waits until the worker w is ready and prints it (ID URL, or
// an api.PoolWorker with --json). A worker that fails to load or exits
// first is stopped and forgotten, and the error carries its log's last lines.
func (e *env) awaitSpawned(ctx context.Context, w store.Worker, proc supervise.Proc, wait time.Duration) error {
	if err := e.waitReady(ctx, &w, proc, wait); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := supervise.Stop(stopCtx, proc, 5*time.Second); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			fmt.Fprintf(e.errOut, "pool: stopping worker %s: %v\n", w.ID, err)
		}
		if err := e.forget(w.ID); err != nil {
			fmt.Fprintf(e.errOut, "pool: forgetting worker %s: %v\n", w.ID, err)
		}
		return fmt.Errorf("%w\n%s", err, logTail(w.LogPath, logTailLines))
	}
	if e.asJSON {
		return e.print(e.rowOf(ctx, w).poolWorker(), nil)
	}
	fmt.Fprintf(e.out, "%s\t%s\n", w.ID, w.URL)
	return nil
}

// logTailLines is how much of a failed worker's log spawn shows.
const logTailLines = 20

// maxTokenBytes bounds a worker token read from a file or stdin.
const maxTokenBytes = 64 << 10

// readToken reads the worker token from a file, or from stdin for "-".
func readToken(name string) (string, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("pool: token file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("pool: token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxTokenBytes:
		return "", fmt.Errorf("pool: token longer than %d bytes", maxTokenBytes)
	case tok == "":
		return "", errors.New("pool: the token is empty")
	case strings.ContainsAny(tok, "\x00\n\r"):
		return "", errors.New("pool: the token must be one line")
	}
	return tok, nil
}

// waitReady waits for the worker's address file, records its URL, then polls
// /health until ready, showing load progress on stderr.
func (e *env) waitReady(ctx context.Context, w *store.Worker, p supervise.Proc, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := func() error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pool: worker %s not ready after %s (log %s)", w.ID, limit, w.LogPath)
		case <-time.After(50 * time.Millisecond):
			return nil
		}
	}
	for w.URL == "" {
		if !supervise.Alive(p) {
			return fmt.Errorf("pool: worker %s exited before it was ready (log %s)", w.ID, w.LogPath)
		}
		url, err := bind.ReadAddrFile(w.AddrFile)
		switch {
		case err == nil:
			u, perr := neturl.Parse(url)
			port, aerr := strconv.Atoi(u.Port())
			if perr != nil || aerr != nil {
				return fmt.Errorf("pool: worker %s wrote a bad address %q", w.ID, url)
			}
			w.URL, w.Port = url, port
			if err := e.withPool(func(db *store.Pool) error { return db.PutWorker(*w) }); err != nil {
				return err
			}
			continue
		case !errors.Is(err, os.ErrNotExist):
			return err
		}
		if err := tick(); err != nil {
			return err
		}
	}
	c := workerclient.New(w.URL, "", &http.Client{Timeout: 2 * time.Second})
	lastShown := -1
	for {
		if !supervise.Alive(p) {
			return fmt.Errorf("pool: worker %s exited before it was ready (log %s)", w.ID, w.LogPath)
		}
		if h, err := c.Health(ctx); err == nil {
			switch h.Status {
			case api.StatusReady:
				return nil
			case api.StatusFailed:
				return fmt.Errorf("pool: worker %s failed to load the model: %s", w.ID, h.Error)
			}
			if pct := int(h.Progress * 100); e.asJSON && pct/5 != lastShown/5 {
				// With --json, progress goes to stderr as NDJSON (stdout
				// holds the one result object): the orchestrator relays it.
				fmt.Fprintf(e.errOut, "{\"event\":\"progress\",\"step\":\"loading\",\"worker\":%q,\"progress\":%.2f}\n", w.ID, h.Progress)
				lastShown = pct
			} else if !e.asJSON && pct/10 != lastShown/10 {
				fmt.Fprintf(e.errOut, "%s: loading %d%%\n", w.ID, pct)
				lastShown = pct
			}
		}
		if err := tick(); err != nil {
			return err
		}
	}
}

// newWorkerID is BACKEND-<8 hex digits>, unused in this pool. The id is fixed
// before the worker starts (its log is named after it, and it registers with
// the orchestrator under it), when its port is not yet known.
func (e *env) newWorkerID(backend string) (string, error) {
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := backend + "-" + hex.EncodeToString(b[:])
		err := e.withPool(func(db *store.Pool) error { _, err := db.Worker(id); return err })
		if errors.Is(err, store.ErrNotFound) {
			return id, nil
		}
		if err != nil {
			return "", err
		}
	}
}

// forget deletes a worker's record and its address file.
func (e *env) forget(ids ...string) error {
	return e.withPool(func(db *store.Pool) error {
		for _, id := range ids {
			w, err := db.Worker(id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if w.AddrFile != "" {
				if err := os.Remove(w.AddrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			if err := db.DeleteWorker(id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
}

// workerURL is where w answers: its recorded URL or, while spawn has not yet
// recorded it, the one in its address file ("" while there is none).
func workerURL(w store.Worker) string {
	if w.URL != "" || w.AddrFile == "" {
		return w.URL
	}
	if url, err := bind.ReadAddrFile(w.AddrFile); err == nil {
		return url
	}
	return ""
}

// pickPort resolves --port: auto is 0 (the worker binds a port the OS
// chooses); a busy port moves to the next free one.
func pickPort(host, spec string) (int, error) {
	if spec == "auto" || spec == "0" {
		return 0, nil
	}
	p, err := strconv.Atoi(spec)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("pool: --port must be 1..65535 or auto, got %q", spec)
	}
	for ; p <= 65535; p++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			ln.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("pool: no free port from %s up", spec)
}

func logTail(path string, n int) string {
	lines, err := tailLines(path, n)
	if err != nil || len(lines) == 0 {
		return ""
	}
	return "last lines of the worker log:\n  " + strings.Join(lines, "\n  ")
}

// tailLines returns the last n lines of a file, reading at most its last
// 256 KiB.
func tailLines(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const most = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > most {
		if _, err := f.Seek(st.Size()-most, io.SeekStart); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, most))
	if err != nil {
		return nil, err
	}
	text := strings.TrimRight(string(data), "\n")
	if text == "" {
		return []string{}, nil
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

func logsCommand(e *env) *cli.Command {
	var n int
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the last lines of a worker's log (it is kept after the worker stopped or crashed)",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Value: 20, Usage: "how many lines (1..10000)", Destination: &n}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneArg(cmd, "worker id")
			if err != nil {
				return err
			}
			if why := api.CheckID(id); why != "" {
				return cli.Exit("pool: worker id "+why, 2)
			}
			if n < 1 || n > 10000 {
				return cli.Exit("pool: --lines must be 1..10000", 2)
			}
			lines, err := tailLines(filepath.Join(e.logsDir(), id+".log"), n)
			if errors.Is(err, fs.ErrNotExist) {
				return exit1(fmt.Errorf("pool: no log for worker %s", id))
			}
			if err != nil {
				return exit1(err)
			}
			if e.asJSON {
				return e.print(map[string]any{"id": id, "lines": lines}, nil)
			}
			for _, l := range lines {
				fmt.Fprintln(e.out, l)
			}
			return nil
		},
	}
}

// workerRow is a worker with its live state.
type workerRow struct {
	store.Worker
	Alive      bool   `json:"alive"`
	Status     string `json:"status"` // /health status, or unreachable / dead
	SlotsBusy  int    `json:"slots_busy"`
	SlotsTotal int    `json:"slots_total"`
	RSSBytes   uint64 `json:"rss_bytes,omitempty"`
}

func (e *env) workerRows(ctx context.Context) ([]workerRow, error) {
	var ws []store.Worker
	if err := e.withPool(func(db *store.Pool) (err error) { ws, err = db.Workers(); return err }); err != nil {
		return nil, err
	}
	// The workers' /health are asked at once: a hung one costs the
	// timeout once, not once per worker.
	rows := make([]workerRow, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() { rows[i] = e.rowOf(ctx, w) })
	}
	wg.Wait()
	return rows, nil
}

// rowOf is w with its liveness, /health and resident memory.
func (e *env) rowOf(ctx context.Context, w store.Worker) workerRow {
	r := workerRow{Worker: w, Status: "dead"}
	r.Alive = supervise.Alive(supervise.Proc{PID: w.PID, StartTime: w.StartTime})
	if r.Alive {
		r.Status = "unreachable"
		r.URL = workerURL(w)
		r.RSSBytes = procRSS(w.PID)
		if r.URL != "" {
			if h, err := health(ctx, r.URL, 2*time.Second); err == nil {
				r.Status, r.SlotsBusy, r.SlotsTotal = h.Status, h.SlotsBusy, h.SlotsTotal
			}
		}
	}
	return r
}

func health(ctx context.Context, url string, timeout time.Duration) (*api.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return workerclient.New(url, "", &http.Client{Timeout: timeout}).Health(ctx)
}

func (e *env) printWorkers(rows []workerRow) error {
	return e.print(rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "ID\tPID\tBACKEND\tMODEL\tURL\tSTATUS\tSLOTS")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d/%d\n", r.ID, r.PID, r.Backend, r.Model, r.URL, r.Status, r.SlotsBusy, r.SlotsTotal)
		}
	})
}

func stopCommand(e *env) *cli.Command {
	var all bool
	var grace time.Duration
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop a worker (SIGTERM, grace, SIGKILL to its process group)",
		ArgsUsage: "ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "stop every worker", Destination: &all},
			&cli.DurationFlag{Name: "grace", Value: 30 * time.Second, Usage: "time to drain before SIGKILL", Destination: &grace},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			var ids []string
			switch {
			case all && cmd.Args().Len() == 0:
				var ws []store.Worker
				if err := e.withPool(func(db *store.Pool) (err error) { ws, err = db.Workers(); return err }); err != nil {
					return exit1(err)
				}
				for _, w := range ws {
					ids = append(ids, w.ID)
				}
			case !all && cmd.Args().Len() == 1:
				ids = []string{cmd.Args().First()}
			default:
				return cli.Exit("pool: give one worker id, or --all", 2)
			}
			stopped := []string{}
			for _, id := range ids {
				err := e.stop(ctx, id, grace)
				if e.asJSON && errors.Is(err, errNoWorker) {
					continue // stopping what is not there is done
				}
				if err != nil {
					return exit1(err)
				}
				stopped = append(stopped, id)
				if !e.asJSON {
					fmt.Fprintf(e.out, "stopped %s\n", id)
				}
			}
			if e.asJSON {
				return e.print(struct {
					Stopped []string `json:"stopped"`
				}{stopped}, nil)
			}
			return nil
		},
	}
}

// errNoWorker: stop was given an id the pool does not know.
var errNoWorker = errors.New("pool: no worker")

func (e *env) stop(ctx context.Context, id string, grace time.Duration) error {
	var w store.Worker
	if err := e.withPool(func(db *store.Pool) (err error) { w, err = db.Worker(id); return err }); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w %q (see llorch pool worker list)", errNoWorker, id)
		}
		return err
	}
	err := supervise.Stop(ctx, supervise.Proc{PID: w.PID, StartTime: w.StartTime}, grace)
	if err != nil && !errors.Is(err, supervise.ErrNotFound) && !errors.Is(err, supervise.ErrPIDReused) {
		return err
	}
	return e.forget(id)
}

func cleanupCommand(e *env) *cli.Command {
	var timeout time.Duration
	return &cli.Command{
		Name:  "cleanup",
		Usage: "forget dead workers, kill hung ones and stray workers of this pool dir",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "health-timeout", Value: 3 * time.Second, Usage: "a live worker whose /health does not answer within this is hung", Destination: &timeout},
		},
		Action: func(ctx context.Context, _ *cli.Command) error {
			rep, err := e.cleanup(ctx, timeout)
			if err != nil {
				return exit1(err)
			}
			return e.print(rep, func(w *tabwriter.Writer) {
				for _, line := range rep.Actions {
					fmt.Fprintln(w, line)
				}
				fmt.Fprintf(w, "cleanup: %d dead removed, %d hung killed, %d strays killed\n", len(rep.Dead), len(rep.Hung), len(rep.Strays))
			})
		},
	}
}

// CleanupReport says what cleanup did.
type CleanupReport struct {
	Dead    []string `json:"dead"`
	Hung    []string `json:"hung"`
	Strays  []int    `json:"strays"`
	Actions []string `json:"actions"`
}

func (e *env) cleanup(ctx context.Context, timeout time.Duration) (CleanupReport, error) {
	rep := CleanupReport{Dead: []string{}, Hung: []string{}, Strays: []int{}, Actions: []string{}}
	var ws []store.Worker
	if err := e.withPool(func(db *store.Pool) (err error) { ws, err = db.Workers(); return err }); err != nil {
		return rep, err
	}
	known := map[supervise.Proc]bool{}
	var forget []string
	for _, w := range ws {
		p := supervise.Proc{PID: w.PID, StartTime: w.StartTime}
		if !supervise.Alive(p) {
			forget = append(forget, w.ID)
			rep.Dead = append(rep.Dead, w.ID)
			rep.Actions = append(rep.Actions, fmt.Sprintf("removed dead worker %s (pid %d)", w.ID, w.PID))
			continue
		}
		if _, err := e.healthOf(ctx, w, timeout); err != nil {
			if err := supervise.Kill(p); err != nil && !errors.Is(err, supervise.ErrNotFound) {
				return rep, err
			}
			forget = append(forget, w.ID)
			rep.Hung = append(rep.Hung, w.ID)
			rep.Actions = append(rep.Actions, fmt.Sprintf("killed hung worker %s (pid %d): /health: %v", w.ID, w.PID, err))
			continue
		}
		known[p] = true
	}
	if err := e.forget(forget...); err != nil {
		return rep, err
	}
	found, err := supervise.FindByEnv(envPoolDir, e.dir)
	if err != nil {
		return rep, err
	}
	for _, f := range found {
		if known[f.Proc] || !isWorker(f.Cmdline) {
			continue
		}
		if err := supervise.Kill(f.Proc); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			return rep, err
		}
		rep.Strays = append(rep.Strays, f.PID)
		rep.Actions = append(rep.Actions, fmt.Sprintf("killed stray worker pid %d (%s)", f.PID, strings.Join(f.Cmdline, " ")))
	}
	return rep, nil
}

// healthOf asks w's /health, within timeout in all: a worker spawn has just
// started may not have written its address file yet.
func (e *env) healthOf(ctx context.Context, w store.Worker, timeout time.Duration) (*api.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := workerURL(w)
	for url == "" {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no address in %s after %s", w.AddrFile, timeout)
		case <-time.After(50 * time.Millisecond):
		}
		url = workerURL(w)
	}
	return workerclient.New(url, "", &http.Client{Timeout: timeout}).Health(ctx)
}

// isWorker: a `llorch worker` process (whatever the binary is called; the
// LLORCH_POOL_DIR marker already scopes the search to this pool).
func isWorker(cmdline []string) bool {
	return len(cmdline) > 1 && cmdline[1] == "worker"
}
