// Package worker is the `llorch worker` mode: flags → workerd.Config → Serve.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/bind"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/catalog"
	"github.com/llorch/llorch/core/workerd"
)

// Command returns `llorch worker`.
func Command() *cli.Command {
	var (
		cfg      workerd.Config
		host     string
		port     int
		logLevel string
		addrFile string
		insecure bool
		bf       backendFlags
	)
	return &cli.Command{
		Name:  "worker",
		Usage: "load one GGUF model and serve inference over HTTP/SSE",
		Description: "Binds HTTP first (GET /health answers \"loading\" with progress), loads the model, then\n" +
			"serves POST /execute (SSE), POST /cancel, POST /shutdown, GET /metrics.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "backend", Local: true, Value: "cpu", Usage: "inference backend: " + strings.Join(backendNames, ", ") + " (cuda loads libggml-cuda.so from $LLORCH_LIB_PATH or <dir of llorch>/../lib/llorch)", Destination: &bf.backend, Sources: cli.EnvVars("LLORCH_BACKEND")},
			&cli.StringFlag{Name: "model", Local: true, Aliases: []string{"m"}, Usage: "GGUF model file (required)", Destination: &cfg.ModelPath, Sources: cli.EnvVars("LLORCH_MODEL")},
			&cli.StringFlag{Name: "model-id", Local: true, Usage: "model name reported to clients (default: file name without .gguf)", Destination: &cfg.ModelID},
			&cli.StringFlag{Name: "host", Local: true, Value: "127.0.0.1", Usage: "address to listen on", Destination: &host, Sources: cli.EnvVars("LLORCH_HOST")},
			&cli.IntFlag{Name: "port", Local: true, Value: 8001, Usage: "port to listen on (0: a free port the OS chooses; see --addr-file)", Destination: &port, Sources: cli.EnvVars("LLORCH_PORT")},
			&cli.StringFlag{Name: "addr-file", Local: true, Usage: "once the port is bound, write the worker's URL (http://HOST:PORT and a newline) to this file, atomically", Destination: &addrFile},
			&cli.BoolFlag{Name: "insecure-no-auth", Local: true, Usage: "allow a non-loopback --host without --token", Destination: &insecure},
			&cli.BoolFlag{Name: "embedding", Local: true, Usage: "serve embeddings (POST /v1/embeddings, pooling from the model, mean when it names none) instead of text generation", Destination: &cfg.Embedding, Sources: cli.EnvVars("LLORCH_EMBEDDING")},
			&cli.IntFlag{Name: "slots", Local: true, Value: 4, Usage: "parallel sequences served at once", Destination: &cfg.Slots},
			&cli.IntFlag{Name: "queue", Local: true, Usage: "requests that may wait for a slot when all are busy, first come first served (0: ALL_SLOTS_BUSY at once; for a worker serving clients directly, not one behind an orchestrator)", Destination: &cfg.Queue, Sources: cli.EnvVars("LLORCH_WORKER_QUEUE")},
			&cli.IntFlag{Name: "ctx", Local: true, Usage: "context size per slot in tokens (default 4096, capped at the model's); with --embedding the longest input and the tokens of one batched decode", Destination: &cfg.Ctx},
			&cli.IntFlag{Name: "threads", Local: true, Value: defaultThreads(), Usage: "CPU threads for decoding", Destination: &cfg.Threads},
			&cli.IntFlag{Name: "threads-batch", Local: true, Usage: "CPU threads for prompt processing (default: --threads)", Destination: &cfg.ThreadsBatch},
			&cli.IntFlag{Name: "batch", Local: true, Value: 512, Usage: "most tokens per decode step (all slots together)", Destination: &cfg.Batch},
			&cli.StringFlag{Name: "flash-attn", Local: true, Value: "auto", Usage: "flash attention: auto, on, off", Destination: &cfg.FlashAttn},
			&cli.IntFlag{Name: "gpu", Local: true, Usage: "GPU index, as nvidia-smi numbers them (cuda)", Destination: &bf.gpu},
			&cli.StringFlag{Name: "gpu-layers", Local: true, Value: "all", Usage: "layers to offload to the GPU: a count or all (cuda)", Destination: &bf.gpuLayers},
			&cli.StringFlag{Name: "cpu-variant", Local: true, Value: "auto", Usage: "CPU backend: auto (the best libggml-cpu-*.so in the library directory, if any), off (the built-in one), or a variant name", Destination: &bf.cpuVariant, Sources: cli.EnvVars("LLORCH_CPU_VARIANT")},
			&cli.StringFlag{Name: "worker-id", Local: true, Usage: "worker id (default: w-<host>-<port>)", Destination: &cfg.WorkerID, Sources: cli.EnvVars("LLORCH_WORKER_ID")},
			&cli.StringFlag{Name: "token", Local: true, Usage: "shared secret: required as a bearer token on /execute, /cancel, /shutdown and /v1; sent to the orchestrator", Destination: &cfg.Token, Sources: cli.EnvVars("LLORCH_WORKER_TOKEN")},
			&cli.StringFlag{Name: "orchestrator", Local: true, Usage: "orchestrator URL to register with once the model is loaded (then heartbeat)", Destination: &cfg.Orchestrator, Sources: cli.EnvVars("LLORCH_ORCHESTRATOR")},
			&cli.StringFlag{Name: "advertise-url", Local: true, Usage: "URL the orchestrator uses to reach this worker (default http://<host>:<port>)", Destination: &cfg.AdvertiseURL},
			&cli.StringFlag{Name: "pool", Local: true, Usage: "pool name reported to the orchestrator", Destination: &cfg.Pool, Sources: cli.EnvVars("LLORCH_POOL")},
			&cli.DurationFlag{Name: "heartbeat", Local: true, Value: 2 * time.Second, Usage: "heartbeat interval to the orchestrator", Destination: &cfg.HeartbeatInterval},
			&cli.DurationFlag{Name: "drain-grace", Local: true, Value: 30 * time.Second, Usage: "how long SIGTERM or /shutdown waits for running jobs", Destination: &cfg.DrainGrace},
			&cli.StringFlag{Name: "log-level", Local: true, Value: "info", Usage: "debug, info, warn, error", Destination: &logLevel, Sources: cli.EnvVars("LLORCH_LOG_LEVEL")},
		},
		Commands: []*cli.Command{benchCommand()},
		Action: func(ctx context.Context, _ *cli.Command) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			llamacpp.SetLogger(log)
			if err := checkBind(host, cfg.Token != "", insecure); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			place, err := prepareBackend(bf, log)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			cfg.Backend, cfg.GPU = bf.backend, bf.gpu
			if cfg.ModelPath == "" {
				return cli.Exit("worker: --model is required", 1)
			}
			if err := checkModel(cfg.ModelPath); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return cli.Exit(fmt.Sprintf("worker: cannot listen: %v", err), 1)
			}
			defer ln.Close()
			if cfg.WorkerID == "" {
				// The port bound, not the one asked for (0 lets the OS choose).
				h, _ := os.Hostname()
				cfg.WorkerID = fmt.Sprintf("w-%s-%d", h, ln.Addr().(*net.TCPAddr).Port)
			}
			srv, err := workerd.New(cfg, workerd.Deps{Log: log, Load: loader(place), Digest: digest})
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			url := bind.LocalURL(ln.Addr())
			if addrFile != "" {
				if err := bind.WriteAddrFile(addrFile, url); err != nil {
					return cli.Exit(fmt.Sprintf("worker: %v", err), 1)
				}
			}
			log.Info("worker listening", "addr", url, "version", buildinfo.Version, "backend", cfg.Backend)
			if err := srv.Serve(ctx, ln); err != nil {
				return cli.Exit(fmt.Sprintf("worker: %v", err), 1)
			}
			log.Info("worker stopped")
			return nil
		},
	}
}

// checkBind refuses a listen host other machines can reach when no --token
// guards /execute and /shutdown, unless the operator insists.
func checkBind(host string, haveToken, insecure bool) error {
	if haveToken || insecure || bind.Loopback(host) {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "all interfaces"
	}
	return fmt.Errorf("worker: refusing to listen on %s without --token (anyone who reaches it could run jobs and /shutdown it): give --token (or LLORCH_WORKER_TOKEN), use --host 127.0.0.1, or pass --insecure-no-auth", shown)
}

// loader loads models where prepareBackend placed them.
func loader(place placement) workerd.Loader {
	return func(path string, o workerd.LoadOptions) (backends.Model, error) {
		p := place.params()
		p.Progress = o.Progress
		return llamacpp.Load(path, p)
	}
}

// digest is the model file's "sha256:<hex>", computed after the worker is ready.
func digest(path string) (string, error) {
	sum, _, err := catalog.SHA256File(context.Background(), path)
	return "sha256:" + sum, err
}

// checkModel gives a clear line for a missing, unreadable or truncated model
// before any work.
func checkModel(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("worker: cannot read model: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.Read(magic[:]); err != nil || string(magic[:]) != "GGUF" {
		return fmt.Errorf("worker: %s is not a GGUF file", path)
	}
	if err := catalog.CheckComplete(path); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

func defaultThreads() int { return max(1, runtime.NumCPU()) }

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("worker: bad --log-level %q", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
