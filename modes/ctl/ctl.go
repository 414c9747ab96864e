// Package ctl is the `llorch ctl` mode: the operator's remote control. It
// runs `llorch pool …` on pool hosts over SSH, installs the binary there, and
// talks to workers.
package ctl

import "github.com/urfave/cli/v3"

// Command returns `llorch ctl`.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "ctl",
		Usage: "remote control: run pool commands on hosts over SSH, install llorch there, talk to workers and the orchestrator",
		Commands: []*cli.Command{
			inferCommand(),
			poolCommand(),
			workersCommand(),
			tasksCommand(),
			usageCommand(),
			keysCommand(),
			fleetCommand(),
			benchCommand(),
		},
	}
}
