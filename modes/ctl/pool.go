package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/poolrun"
	"github.com/llorch/llorch/core/remote"
)

// exitSSH is ssh's status for a connection that failed (auth, host key, network).
const exitSSH = 255

// sshFlags are ctl's own flags inside `ctl pool …`; every other argument is
// passed to the remote `llorch pool`.
type sshFlags struct {
	hosts     []string
	llorch    string
	path      string // install target
	cfg       remote.Config
	showUsage bool
}

// parseSSHFlags takes ctl's flags out of args (they may stand anywhere) and
// returns the rest in order.
func parseSSHFlags(args []string) (sshFlags, []string, error) {
	var f sshFlags
	var rest []string
	value := func(i *int, name string) (string, error) {
		a := args[*i]
		if k, v, ok := strings.Cut(a, "="); ok && strings.TrimLeft(k, "-") == name {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("ctl pool: %s needs a value", a)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		var err error
		var v string
		switch name {
		case "host":
			v, err = value(&i, name)
			f.hosts = append(f.hosts, v)
		case "hosts":
			v, err = value(&i, name)
			for _, h := range strings.Split(v, ",") {
				if h = strings.TrimSpace(h); h != "" {
					f.hosts = append(f.hosts, h)
				}
			}
		case "llorch":
			f.llorch, err = value(&i, name)
		case "user":
			f.cfg.User, err = value(&i, name)
		case "port":
			v, err = value(&i, name)
			if err == nil {
				if f.cfg.Port, err = strconv.Atoi(v); err != nil || f.cfg.Port < 1 || f.cfg.Port > 65535 {
					err = fmt.Errorf("ctl pool: --port must be 1..65535, got %q", v)
				}
			}
		case "i", "identity":
			v, err = value(&i, name)
			f.cfg.IdentityFiles = append(f.cfg.IdentityFiles, v)
		case "ssh-config":
			f.cfg.SSHConfigPath, err = value(&i, name)
		case "known-hosts":
			f.cfg.KnownHostsPath, err = value(&i, name)
		case "accept-new-host-key":
			f.cfg.AcceptNewHostKey = true
		case "ssh-timeout":
			v, err = value(&i, name)
			if err == nil {
				f.cfg.Timeout, err = time.ParseDuration(v)
			}
		case "path":
			f.path, err = value(&i, name)
		case "help", "h":
			f.showUsage = true
			rest = append(rest, a)
		default:
			rest = append(rest, a)
		}
		if err != nil {
			return f, nil, err
		}
	}
	return f, rest, nil
}

const poolUsage = `llorch ctl pool <pool subcommand and flags> --host H [--host H2 | --hosts a,b,c] [ssh flags]
llorch ctl pool install --host H [--path ~/.local/bin/llorch]

Runs "llorch pool ..." on each host over SSH (in parallel, output prefixed by host when
there are several); the remote exit status becomes ours, 255 when SSH itself fails,
127 when llorch is not on the host.

install copies this build as a release archive lays it out: the binary to --path and
the lib/llorch/ next to it (run-time CPU variants, libggml-cuda.so) to <dir of path>/../lib/llorch,
where the installed binary finds them; files the host already has are not copied again.

ssh flags: --user U, --port P, -i KEY (repeatable), --ssh-config FILE, --known-hosts FILE,
           --accept-new-host-key, --ssh-timeout 10s, --llorch PATH (remote binary)
Hosts, users, ports and keys come from ~/.ssh/config first; flags override them.`

func poolCommand() *cli.Command {
	return &cli.Command{
		Name:            "pool",
		Usage:           "run `llorch pool …` on hosts over SSH, or install llorch there",
		UsageText:       poolUsage,
		SkipFlagParsing: true,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			f, rest, err := parseSSHFlags(cmd.Args().Slice())
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			out, errOut := writers(cmd)
			if len(f.hosts) == 0 || len(rest) == 0 {
				if f.showUsage {
					fmt.Fprintln(out, poolUsage)
					return nil
				}
				return cli.Exit("ctl pool: need a pool subcommand and --host\n\n"+poolUsage, 2)
			}
			if rest[0] == "install" {
				return install(ctx, f, out, errOut)
			}
			return runPool(ctx, f, rest, out, errOut)
		},
	}
}

func writers(cmd *cli.Command) (io.Writer, io.Writer) {
	out, errOut := cmd.Root().Writer, cmd.Root().ErrWriter
	if out == nil {
		out = os.Stdout
	}
	if errOut == nil {
		errOut = os.Stderr
	}
	return out, errOut
}

// runPool runs `llorch pool rest…` on every host in parallel.
func runPool(ctx context.Context, f sshFlags, rest []string, out, errOut io.Writer) error {
	codes := make([]int, len(f.hosts))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, host := range f.hosts {
		stdout, stderr := out, errOut
		if len(f.hosts) > 1 {
			stdout, stderr = &prefixWriter{w: out, mu: &mu, prefix: host + ": "}, &prefixWriter{w: errOut, mu: &mu, prefix: host + ": "}
		}
		wg.Go(func() {
			codes[i] = runOne(ctx, f, host, rest, stdout, stderr)
			if pw, ok := stdout.(*prefixWriter); ok {
				pw.Flush()
				stderr.(*prefixWriter).Flush()
			}
		})
	}
	wg.Wait()
	if len(f.hosts) > 1 {
		failed := 0
		for i, h := range f.hosts {
			status := "ok"
			if codes[i] != 0 {
				failed++
				status = fmt.Sprintf("exit %d", codes[i])
			}
			fmt.Fprintf(errOut, "%s: %s\n", h, status)
		}
		fmt.Fprintf(errOut, "%d of %d hosts succeeded\n", len(f.hosts)-failed, len(f.hosts))
	}
	for _, c := range codes {
		if c != 0 {
			return cli.Exit("", c)
		}
	}
	return nil
}

func runOne(ctx context.Context, f sshFlags, host string, rest []string, stdout, stderr io.Writer) int {
	c, err := dial(ctx, f, host)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitSSH
	}
	defer c.Close()
	code, err := c.Pool(ctx, rest, nil, stdout, stderr)
	switch {
	case errors.Is(err, poolrun.ErrNoLlorch):
		fmt.Fprintf(stderr, "ctl pool: %v\n", err)
		return exitNotFound
	case err != nil:
		fmt.Fprintf(stderr, "ctl pool: %s: %v\n", host, err)
		return exitSSH
	}
	return code
}

// exitNotFound is the shell's status for a command that is not there.
const exitNotFound = 127

// dial connects to host over SSH with the flags' settings.
func dial(ctx context.Context, f sshFlags, host string) (*poolrun.Conn, error) {
	return poolrun.Dial(ctx, poolrun.Target{Transport: api.TransportSSH, Host: host, LlorchPath: f.llorch, SSH: f.cfg})
}

// install copies this build (bin/llorch and lib/llorch/) to the host.
func install(ctx context.Context, f sshFlags, out, errOut io.Writer) error {
	if len(f.hosts) != 1 {
		return cli.Exit("ctl pool install: give one --host", 2)
	}
	host := f.hosts[0]
	c, err := dial(ctx, f, host)
	if err != nil {
		return cli.Exit(err.Error(), exitSSH)
	}
	defer c.Close()
	rep, err := c.Install(ctx, poolrun.InstallOptions{Dest: f.path, Log: prefixHost(errOut, host, c.Addr())})
	if err != nil {
		return cli.Exit(fmt.Sprintf("ctl pool install: %v", err), 1)
	}
	if len(rep.Libs) == 0 {
		fmt.Fprintf(errOut, "%s: no lib/llorch next to this binary: the host gets no run-time CPU variants or CUDA library\n", host)
	}
	fmt.Fprintf(out, "%s: %s\n", host, rep.Build.Line)
	return nil
}

// prefixHost rewrites Install's "user@host:port: " line prefix to the host
// name as the operator gave it.
func prefixHost(w io.Writer, host, addr string) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		_, err := io.WriteString(w, host+": "+strings.TrimPrefix(string(b), addr+": "))
		return len(b), err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// prefixWriter prefixes every line with the host name; lines of several
// hosts never interleave mid-line.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}

// Flush writes a last unterminated line.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.Write([]byte("\n"))
	}
}
