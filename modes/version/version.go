// Package version is the `llorch version` mode.
package version

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/buildinfo"
)

// Command returns `llorch version`.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit and backend of this binary",
		Action: func(_ context.Context, cmd *cli.Command) error {
			_, err := fmt.Fprintln(cmd.Root().Writer, buildinfo.String())
			return err
		},
	}
}
