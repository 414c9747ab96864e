// Package orchestrate is the `llorch orchestrate` mode: flags → orchestrator.Config → Serve.
package orchestrate

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bind"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/fleetfile"
	"github.com/llorch/llorch/core/orchestrator"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/store"
	llembed "github.com/llorch/llorch/embed"
)

// Command returns `llorch orchestrate`.
func Command() *cli.Command {
	var (
		cfg        orchestrator.Config
		listen     string
		dataDir    string
		keyFile    string
		envKeys    string
		insecure   bool
		logLevel   string
		storeWait  time.Duration
		policyFlag string
		headers    []string
		addrFile   string
		fleetPath  string
	)
	return &cli.Command{
		Name:  "orchestrate",
		Usage: "run the orchestrator: worker registry, admission, queue, scheduling, SSE relay",
		Description: "Serves the native API (/v2/tasks, /v2/workers, /v2/pools), /metrics and /healthz.\n" +
			"Workers register themselves with `llorch worker --orchestrator URL`.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Local: true, Value: "127.0.0.1:8080", Usage: "address to listen on", Destination: &listen, Sources: cli.EnvVars("LLORCH_LISTEN")},
			&cli.StringFlag{Name: "addr-file", Local: true, Usage: "write the URL the orchestrator listens on to this file (atomically) once it listens; with --listen 127.0.0.1:0 the OS chooses the port", Destination: &addrFile},
			&cli.StringFlag{Name: "data-dir", Local: true, Usage: "directory of the bbolt database (default ~/.local/share/llorch/orchestrator)", Destination: &dataDir, Sources: cli.EnvVars("LLORCH_DATA_DIR")},
			&cli.StringFlag{Name: "api-key-file", Local: true, Usage: "file with one API key per line, optionally followed by its role (user or admin) and a name; clients send Authorization: Bearer <key>", Destination: &keyFile},
			&cli.StringFlag{Name: "api-keys", Local: true, Hidden: true, Destination: &envKeys, Sources: cli.EnvVars("LLORCH_API_KEYS")},
			&cli.BoolFlag{Name: "insecure-no-auth", Local: true, Usage: "allow a non-loopback --listen without API keys", Destination: &insecure},
			&cli.StringFlag{Name: "worker-token", Local: true, Usage: "secret shared with workers (their --token)", Destination: &cfg.WorkerToken, Sources: cli.EnvVars("LLORCH_WORKER_TOKEN")},
			&cli.IntFlag{Name: "queue-capacity", Local: true, Value: 1024, Usage: "most queued tasks per priority class", Destination: &cfg.QueueCapacity},
			&cli.StringFlag{Name: "queue-policy", Local: true, Value: "reject", Usage: "full queue: reject (429 QUEUE_FULL) or drop-lru (drop the oldest batch task of the key with the most batch tasks queued)", Destination: &policyFlag},
			&cli.DurationFlag{Name: "starvation-limit", Local: true, Value: 30 * time.Second, Usage: "a batch task waiting this long is promoted", Destination: &cfg.StarvationLimit},
			&cli.StringFlag{Name: "unavailable", Local: true, Value: "wait", Usage: "known model with no healthy worker: wait in the queue, or reject (503 POOL_UNAVAILABLE)", Destination: &cfg.Unavailable},
			&cli.DurationFlag{Name: "heartbeat-timeout", Local: true, Value: 10 * time.Second, Usage: "a worker silent this long is probed on /health", Destination: &cfg.HeartbeatTimeout},
			&cli.DurationFlag{Name: "dead-after", Local: true, Value: time.Minute, Usage: "an unhealthy worker is dead after this long", Destination: &cfg.DeadAfter},
			&cli.IntFlag{Name: "max-attempts", Local: true, Value: 3, Usage: "attempts per task when workers fail before the first token (a busy worker does not count)", Destination: &cfg.MaxAttempts},
			&cli.IntFlag{Name: "max-migrations", Local: true, Value: 2, Usage: "times a task whose worker was lost mid-stream continues on another worker from the tokens already sent (-1: never)", Destination: &cfg.MaxMigrations},
			&cli.DurationFlag{Name: "attempt-idle-timeout", Local: true, Value: time.Minute, Usage: "abandon an attempt whose worker sends nothing, not even a keep-alive, for this long", Destination: &cfg.AttemptIdleTimeout},
			&cli.DurationFlag{Name: "result-ttl", Local: true, Value: time.Hour, Usage: "how long finished tasks are kept", Destination: &cfg.ResultTTL},
			&cli.StringFlag{Name: "fleet", Local: true, Usage: "fleet file (YAML: pools and models) applied at startup; entries not in it are kept (ctl fleet apply --prune removes them)", Destination: &fleetPath, Sources: cli.EnvVars("LLORCH_FLEET")},
			&cli.StringFlag{Name: "advertise-url", Local: true, Usage: "the orchestrator's URL as workers the fleet starts reach it (default: http:// and the listen address)", Destination: &cfg.AdvertiseURL, Sources: cli.EnvVars("LLORCH_ADVERTISE_URL")},
			&cli.StringFlag{Name: "known-hosts", Local: true, Usage: "known_hosts file for ssh pools (default ~/.ssh/known_hosts); an unknown or changed host key makes the pool unreachable", Destination: &cfg.SSH.KnownHostsPath},
			&cli.StringSliceFlag{Name: "identity", Aliases: []string{"i"}, Local: true, Usage: "SSH identity file for ssh pools (repeatable; ssh-agent and ~/.ssh/config are used too)", Destination: &cfg.SSH.IdentityFiles},
			&cli.StringFlag{Name: "ssh-config", Local: true, Usage: "ssh_config file for ssh pools (default ~/.ssh/config)", Destination: &cfg.SSH.SSHConfigPath},
			&cli.BoolFlag{Name: "accept-new-host-key", Local: true, Usage: "trust and record the host key of an ssh pool seen for the first time (a changed key is always refused)", Destination: &cfg.SSH.AcceptNewHostKey},
			&cli.DurationFlag{Name: "inventory-interval", Local: true, Value: 30 * time.Second, Usage: "how often pools' inventories are refreshed", Destination: &cfg.InventoryInterval},
			&cli.StringFlag{Name: "routing-script", Local: true, Usage: "Tengo routing script (reloaded on change and on SIGHUP)", Destination: &cfg.RoutingFile, Sources: cli.EnvVars("LLORCH_ROUTING_SCRIPT")},
			&cli.DurationFlag{Name: "routing-timeout", Local: true, Value: 50 * time.Millisecond, Usage: "time budget of one routing script call", Destination: &cfg.RoutingTimeout},
			&cli.Int64Flag{Name: "routing-max-allocs", Local: true, Value: 100000, Usage: "objects one routing script call may allocate", Destination: &cfg.RoutingMaxAllocs},
			&cli.StringFlag{Name: "routing-policy", Local: true, Value: orchestrator.PolicyCacheAware, Usage: "built-in placement: cache-aware (send a prompt where its prefix is likely cached, balanced against load) or least-loaded", Destination: &cfg.RoutingPolicy, Sources: cli.EnvVars("LLORCH_ROUTING_POLICY")},
			&cli.StringSliceFlag{Name: "routing-header", Local: true, Usage: "a request header routing scripts may read (task.headers; repeatable)", Destination: &headers},
			&cli.DurationFlag{Name: "store-timeout", Local: true, Value: 2 * time.Second, Usage: "how long to wait for the database lock", Destination: &storeWait},
			&cli.StringFlag{Name: "trace-file", Local: true, Usage: "append one JSON line per finished task to this file (mode 0600): arrival, model, API, session fingerprint, token counts, queue/TTFT/total ms, status; replay it with `llorch ctl bench --trace`", Destination: &cfg.TraceFile, Sources: cli.EnvVars("LLORCH_TRACE_FILE")},
			&cli.BoolFlag{Name: "trace-prompts", Local: true, Usage: "record each task's prompt or messages in the --trace-file too (off: lengths and timings only)", Destination: &cfg.TracePrompts, Sources: cli.EnvVars("LLORCH_TRACE_PROMPTS")},
			&cli.DurationFlag{Name: "stats-interval", Local: true, Value: time.Second, Usage: "how often the dashboard's sample ring (GET /v2/stats) takes a sample, 10ms to 1m; it keeps 15 minutes", Destination: &cfg.StatsInterval},
			&cli.StringFlag{Name: "log-level", Local: true, Value: "info", Usage: "debug, info, warn, error", Destination: &logLevel, Sources: cli.EnvVars("LLORCH_LOG_LEVEL")},
		},
		Commands: []*cli.Command{routingCommand()},
		Action: func(ctx context.Context, _ *cli.Command) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return cli.Exit(fmt.Sprintf("orchestrate: bad --log-level %q", logLevel), 1)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			cfg.QueuePolicy = policyFlag
			cfg.RoutingHeaders = headers
			keys, err := loadKeys(keyFile, envKeys)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			cfg.Keys = keys
			if fleetPath != "" {
				ff, err := loadFleet(fleetPath)
				if err != nil {
					return cli.Exit("orchestrate: "+err.Error(), 1)
				}
				cfg.Fleet = &ff
			}
			if dataDir == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return cli.Exit("orchestrate: no home directory; give --data-dir", 1)
				}
				dataDir = filepath.Join(home, ".local", "share", "llorch", "orchestrator")
			}
			st, err := store.OpenOrchestrator(filepath.Join(dataDir, "orchestrator.db"), storeWait)
			if err != nil {
				return cli.Exit(fmt.Sprintf("orchestrate: %v", err), 1)
			}
			defer st.Close()
			stored, err := st.HasKeys() // keys created with llorch ctl keys count too
			if err != nil {
				return cli.Exit(fmt.Sprintf("orchestrate: %v", err), 1)
			}
			if err := orchestrator.CheckBind(listen, len(keys) > 0 || stored, insecure); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			deps := orchestrator.Deps{Log: log, Store: st, UI: llembed.UI, DefaultRoutingScript: llembed.DefaultRoutingScript}
			if exe, err := os.Executable(); err == nil {
				// Every script runs once in a sandboxed child process before it
				// is loaded: what slips past the in-process guards kills the
				// child, not the orchestrator.
				argv := routing.TrialCommand(exe, routing.Config{Timeout: cfg.RoutingTimeout, MaxAllocs: cfg.RoutingMaxAllocs})
				deps.TrialScript = func(ctx context.Context, name string, src []byte) error { return routing.Trial(ctx, argv, name, src) }
			} else {
				log.Warn("routing scripts load without a trial: cannot find this executable", "err", err)
			}
			srv, err := orchestrator.New(cfg, deps)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return cli.Exit(fmt.Sprintf("orchestrate: cannot listen: %v", err), 1)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if err := srv.ReloadRouting(); err != nil {
						log.Error("SIGHUP: routing script not reloaded; keeping the previous one", "err", err)
					}
				}
			}()
			if addrFile != "" {
				if err := bind.WriteAddrFile(addrFile, bind.LocalURL(ln.Addr())); err != nil {
					return cli.Exit(fmt.Sprintf("orchestrate: %v", err), 1)
				}
			}
			log.Info("orchestrator listening", "addr", "http://"+ln.Addr().String(), "data_dir", dataDir, "version", buildinfo.Version, "api_keys", len(keys))
			if err := srv.Serve(ctx, ln); err != nil {
				return cli.Exit(fmt.Sprintf("orchestrate: %v", err), 1)
			}
			log.Info("orchestrator stopped")
			return nil
		},
	}
}

// loadKeys reads API keys from a file (orchestrator.ParseKeys: one key per
// line, optionally with a role and a name) and from the environment (the
// same entries, separated by commas or newlines).
func loadKeys(file, env string) ([]orchestrator.Key, error) {
	var keys []orchestrator.Key
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("orchestrate: api key file: %w", err)
		}
		fk, err := orchestrator.ParseKeys(string(data))
		if err != nil {
			return nil, fmt.Errorf("orchestrate: api key file %s: %w", file, err)
		}
		if len(fk) == 0 {
			return nil, fmt.Errorf("orchestrate: api key file %s has no keys", file)
		}
		keys = append(keys, fk...)
	}
	ek, err := orchestrator.ParseKeys(strings.ReplaceAll(env, ",", "\n"))
	if err != nil {
		return nil, fmt.Errorf("orchestrate: LLORCH_API_KEYS: entry %w", err)
	}
	return append(keys, ek...), nil
}

// loadFleet reads and checks the --fleet file (core/fleetfile).
func loadFleet(path string) (api.FleetFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.FleetFile{}, fmt.Errorf("fleet file: %w", err)
	}
	defer f.Close()
	return fleetfile.Load(path, f)
}

// routingCommand is `llorch orchestrate routing check|replay|examples`.
func routingCommand() *cli.Command {
	var (
		timeout   time.Duration
		maxAllocs int64
		snapshot  string
		name      string
		sandboxed bool
	)
	cfg := func() routing.Config { return routing.Config{Timeout: timeout, MaxAllocs: maxAllocs} }
	flags := []cli.Flag{
		&cli.DurationFlag{Name: "routing-timeout", Value: 50 * time.Millisecond, Usage: "time budget of one call", Destination: &timeout},
		&cli.Int64Flag{Name: "routing-max-allocs", Value: 100000, Usage: "objects one call may allocate", Destination: &maxAllocs},
	}
	fail := func(err error) error {
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		return nil
	}
	return &cli.Command{
		Name:  "routing",
		Usage: "test a routing script before deploying it",
		Commands: []*cli.Command{
			{
				Name:      "check",
				Usage:     "compile a script and run it on built-in sample inputs (no file: the built-in default script; -: stdin)",
				ArgsUsage: "[FILE.tengo | -]",
				Flags: append(flags,
					&cli.StringFlag{Name: "name", Value: "stdin.tengo", Usage: "name of a script read from stdin, in error positions", Destination: &name},
					&cli.BoolFlag{Name: "sandboxed", Usage: "limit this process (memory, CPU time, stack), read the script from stdin (-) and print a JSON report: what the orchestrator runs to try a script before it loads it", Destination: &sandboxed}),
				Action: func(_ context.Context, cmd *cli.Command) error {
					if cmd.NArg() > 1 {
						return cli.Exit("orchestrate routing check: give at most one script file", 1)
					}
					path := cmd.Args().First()
					switch {
					case sandboxed && path != "-":
						return cli.Exit("orchestrate routing check --sandboxed: the script comes from stdin: give -", 1)
					case sandboxed:
						return fail(routing.RunSandboxed(os.Stdin, os.Stdout, name, cfg()))
					case path == "":
						return fail(routing.CheckSource(os.Stdout, "default.tengo", llembed.DefaultRoutingScript, cfg()))
					case path == "-":
						src, err := io.ReadAll(io.LimitReader(os.Stdin, routing.MaxSourceBytes+1))
						if err != nil {
							return cli.Exit(fmt.Sprintf("orchestrate routing check: reading stdin: %v", err), 1)
						}
						return fail(routing.CheckSource(os.Stdout, name, src, cfg()))
					}
					return fail(routing.RunCheck(os.Stdout, path, cfg()))
				},
			},
			{
				Name:      "replay",
				Usage:     "run a script over a recorded snapshot (GET /v2/routing/snapshot) and print each decision",
				ArgsUsage: "FILE.tengo",
				Flags:     append(flags, &cli.StringFlag{Name: "snapshot", Usage: "snapshot JSON file (required)", Destination: &snapshot}),
				Action: func(_ context.Context, cmd *cli.Command) error {
					if cmd.NArg() != 1 || snapshot == "" {
						return cli.Exit("orchestrate routing replay: give one script file and --snapshot", 1)
					}
					return fail(routing.RunReplay(os.Stdout, cmd.Args().First(), snapshot, cfg()))
				},
			},
			{
				Name:      "examples",
				Usage:     "list the built-in scripts (the default policy and the examples), or print one",
				ArgsUsage: "[NAME]",
				Action: func(_ context.Context, cmd *cli.Command) error {
					if cmd.NArg() > 1 {
						return cli.Exit("orchestrate routing examples: give at most one name", 1)
					}
					if arg := cmd.Args().First(); arg != "" {
						src, err := routingExample(strings.TrimSuffix(arg, ".tengo"))
						if err != nil {
							return cli.Exit(fmt.Sprintf("orchestrate routing examples: no script %q (list them without a name)", arg), 1)
						}
						_, err = os.Stdout.Write(src)
						return fail(err)
					}
					names, err := fs.Glob(llembed.RoutingExamples, "*.tengo")
					if err != nil {
						return fail(err)
					}
					for _, n := range append([]string{"default"}, names...) {
						n = strings.TrimSuffix(n, ".tengo")
						src, err := routingExample(n)
						if err != nil {
							return fail(err)
						}
						fmt.Printf("%-20s %s\n", n, scriptSummary(src))
					}
					return nil
				},
			},
		},
	}
}

// routingExample is a built-in script: "default" or an example's name
// without .tengo.
func routingExample(name string) ([]byte, error) {
	if name == "default" {
		return llembed.DefaultRoutingScript, nil
	}
	if !fs.ValidPath(name) || strings.Contains(name, "/") {
		return nil, fs.ErrNotExist
	}
	return fs.ReadFile(llembed.RoutingExamples, name+".tengo")
}

// scriptSummary is what the first line of a built-in script says after its
// file name ("// NAME.tengo: SUMMARY").
func scriptSummary(src []byte) string {
	line, _, _ := strings.Cut(string(src), "\n")
	_, summary, _ := strings.Cut(line, ": ")
	return summary
}
