// Command llorch runs LLM inference across your own machines. One binary, one
// mode per subcommand: see `llorch --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/modes/ctl"
	"github.com/llorch/llorch/modes/orchestrate"
	"github.com/llorch/llorch/modes/pool"
	"github.com/llorch/llorch/modes/version"
	"github.com/llorch/llorch/modes/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cli.Command{
		Name:    "llorch",
		Usage:   "run LLM inference across your own machines",
		Version: buildinfo.Version,
		Commands: []*cli.Command{
			orchestrate.Command(),
			worker.Command(),
			pool.Command(),
			ctl.Command(),
			version.Command(),
		},
	}
	if err := root.Run(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "llorch:", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
