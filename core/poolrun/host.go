package poolrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/llorch/llorch/core/remote"
)

// exitNotFound is the status of the remote lookup script (and of a shell)
// when the binary is not there.
const exitNotFound = 127

// findLlorch runs as `sh -c findLlorch sh BIN ARGS…` on an SSH host: it
// resolves BIN ("" = llorch on PATH, else ~/.local/bin/llorch; "~/x" under
// $HOME; a bare name on PATH) and execs it with ARGS, or exits 127 silently.
const findLlorch = `b=$1; shift
case $b in
"") b=$(command -v llorch) || b=$HOME/.local/bin/llorch ;;
"~/"*) b=$HOME/${b#"~/"} ;;
*/*) ;;
*) b=$(command -v "$b") || exit 127 ;;
esac
[ -f "$b" ] && [ -x "$b" ] || exit 127
exec "$b" "$@"`

// sshHost runs commands over one SSH connection.
type sshHost struct{ c *remote.Client }

func (h sshHost) run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return h.c.RunInput(ctx, argv, stdin, stdout, stderr)
}

func (h sshHost) llorch(ctx context.Context, bin string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	argv := append([]string{"sh", "-c", findLlorch, "sh", bin}, args...)
	return h.c.RunInput(ctx, argv, stdin, stdout, stderr)
}

func (h sshHost) upload(ctx context.Context, local, path string, mode uint32) error {
	return h.c.Upload(ctx, local, path, fs.FileMode(mode))
}

func (h sshHost) name() string { return h.c.Addr() }
func (h sshHost) close() error { return h.c.Close() }

// localHost runs commands as child processes of this one.
type localHost struct{}

// waitDelay bounds how long a finished child's output pipes may be held open
// by a process it left behind (a detached worker that inherited them).
const waitDelay = 2 * time.Second

func (localHost) run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("poolrun: run %s: %w", argv[0], err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("poolrun: run %s: %w", argv[0], ctx.Err())
	}
	if cmd.ProcessState == nil { // never started
		return -1, fmt.Errorf("poolrun: run %s: %w", argv[0], err)
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code, nil // ErrWaitDelay included: the command itself finished
	}
	return -1, fmt.Errorf("poolrun: run %s: %w", argv[0], err)
}

func (h localHost) llorch(ctx context.Context, bin string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return -1, fmt.Errorf("%w: this executable: %v", ErrNoLlorch, err)
		}
		bin = exe
	} else if !strings.ContainsRune(bin, os.PathSeparator) {
		p, err := exec.LookPath(bin)
		if err != nil {
			return exitNotFound, nil
		}
		bin = p
	} else if bin, _ = localPath(bin); !isExecutable(bin) {
		return exitNotFound, nil
	}
	return h.run(ctx, append([]string{bin}, args...), stdin, stdout, stderr)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// localPath resolves "~/x" and relative paths under the home directory, as
// an SSH host does.
func localPath(p string) (string, error) {
	if filepath.IsAbs(p) {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p, fmt.Errorf("poolrun: %s: %w", p, err)
	}
	if p == "~" {
		return home, nil
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~/")), nil
}

func (localHost) upload(ctx context.Context, local, path string, mode uint32) (err error) {
	fail := func(step string, err error) error {
		return fmt.Errorf("poolrun: copy %s to %s: %s: %w", local, path, step, err)
	}
	dst, err := localPath(path)
	if err != nil {
		return err
	}
	src, err := os.Open(local)
	if err != nil {
		return fail("open", err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail("mkdir", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail("create", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, readerCtx{ctx, src}); err != nil {
		_ = f.Close()
		return fail("write", err)
	}
	if err := f.Close(); err != nil {
		return fail("close", err)
	}
	if err := os.Chmod(tmp, fs.FileMode(mode).Perm()); err != nil {
		return fail("chmod", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fail("rename", err)
	}
	return nil
}

func (localHost) name() string { return "local" }
func (localHost) close() error { return nil }

// readerCtx stops a copy when ctx ends.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

var (
	_ host = sshHost{}
	_ host = localHost{}
)
