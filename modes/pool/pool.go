// Package pool is the `llorch pool` mode: on one host, the model catalog and
// downloads, backend detection, and the workers it spawns and supervises. It
// is a CLI that exits; its state is a bbolt file in the pool directory.
package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/store"
)

// env is what every pool command shares.
type env struct {
	dir    string
	asJSON bool
	out    io.Writer
	errOut io.Writer
}

func (e *env) modelsDir() string { return filepath.Join(e.dir, "models") }
func (e *env) logsDir() string   { return filepath.Join(e.dir, "logs") }

// open opens the pool database; callers close it before any long wait, so
// that other pool commands are not locked out.
func (e *env) open() (*store.Pool, error) {
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	return store.OpenPool(filepath.Join(e.dir, "pool.db"), 5*time.Second)
}

// withPool runs f with the pool database open.
func (e *env) withPool(f func(*store.Pool) error) error {
	db, err := e.open()
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}

// print writes v as JSON with --json, or calls text otherwise.
func (e *env) print(v any, text func(w *tabwriter.Writer)) error {
	if e.asJSON {
		enc := json.NewEncoder(e.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	text(tw)
	return tw.Flush()
}

// DefaultDir is $LLORCH_POOL_DIR, else $XDG_DATA_HOME/llorch, else ~/.local/share/llorch.
func DefaultDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "llorch")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "llorch")
	}
	return filepath.Join(home, ".local", "share", "llorch")
}

// Command returns `llorch pool`.
func Command() *cli.Command {
	e := &env{}
	return &cli.Command{
		Name:  "pool",
		Usage: "manage this host: models, backends, workers",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pool-dir", Value: DefaultDir(), Usage: "pool directory (catalog, models, logs)", Sources: cli.EnvVars("LLORCH_POOL_DIR"), Destination: &e.dir},
			&cli.BoolFlag{Name: "json", Usage: "print JSON", Destination: &e.asJSON},
		},
		Before: func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
			abs, err := filepath.Abs(e.dir)
			if err != nil {
				return ctx, err
			}
			e.dir, e.out, e.errOut = abs, cmd.Root().Writer, cmd.Root().ErrWriter
			if e.out == nil {
				e.out = os.Stdout
			}
			if e.errOut == nil {
				e.errOut = os.Stderr
			}
			return ctx, nil
		},
		Commands: []*cli.Command{
			modelsCommand(e),
			backendsCommand(e),
			workerCommand(e),
			statusCommand(e),
		},
	}
}

// exit1 turns an error into a one-line message and exit status 1.
func exit1(err error) error {
	if err == nil {
		return nil
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return err
	}
	return cli.Exit(err.Error(), 1)
}
