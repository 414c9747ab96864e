package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
)

// orchFlags are the flags of the commands that ask the orchestrator.
type orchFlags struct {
	url, key string
	json     bool
}

func (f *orchFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "orchestrator", Value: "http://127.0.0.1:8080", Usage: "orchestrator URL", Destination: &f.url, Sources: cli.EnvVars("LLORCH_ORCHESTRATOR")},
		&cli.StringFlag{Name: "api-key", Usage: "API key (Authorization: Bearer)", Destination: &f.key, Sources: cli.EnvVars("LLORCH_API_KEY")},
		&cli.BoolFlag{Name: "json", Usage: "print the answer as JSON", Destination: &f.json},
	}
}

// show asks the orchestrator through core/orchclient (list returns what to
// print) and prints it: JSON with --json, else the table table writes.
func (f *orchFlags) show(ctx context.Context, list func(context.Context, *orchclient.Client) (any, error), table func(tw io.Writer)) error {
	c, err := orchclient.New(f.url, f.key, nil)
	if err != nil {
		return cli.Exit("ctl: "+err.Error(), 2)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := list(ctx, c)
	if err != nil {
		return cli.Exit("ctl: "+err.Error(), 1)
	}
	if f.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func workersCommand() *cli.Command {
	var f orchFlags
	return &cli.Command{
		Name:     "workers",
		Usage:    "list the orchestrator's workers: state, model, slots, load, last seen",
		Flags:    f.flags(),
		Commands: []*cli.Command{drainCommand()},
		Action: func(ctx context.Context, _ *cli.Command) error {
			var out struct {
				Workers []api.WorkerView `json:"workers"`
			}
			list := func(ctx context.Context, c *orchclient.Client) (v any, err error) {
				out.Workers, err = c.Workers(ctx)
				return out, err
			}
			return f.show(ctx, list, func(tw io.Writer) {
				fmt.Fprintln(tw, "ID\tSTATE\tMODEL\tPOOL\tSLOTS\tTOK/S\tLAST SEEN\tURL")
				for _, w := range out.Workers {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%.1f\t%s ago\t%s\n", w.WorkerID, w.State, w.Model.ID, dash(w.Pool),
						w.Assigned, w.Slots, w.TokensPerSecond, time.Since(w.LastSeen).Round(time.Second), w.URL)
				}
			})
		},
	}
}

func drainCommand() *cli.Command {
	var (
		f       orchFlags
		migrate bool
	)
	return &cli.Command{
		Name:      "drain",
		Usage:     "stop new work for a worker; --migrate moves its running streams to other workers at once",
		ArgsUsage: "WORKER_ID",
		Flags:     append(f.flags(), &cli.BoolFlag{Name: "migrate", Usage: "continue the worker's running tasks on other workers of the same model now (without: they finish where they are)", Destination: &migrate}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() != 1 {
				return cli.Exit("ctl: workers drain takes one WORKER_ID", 2)
			}
			var v api.WorkerView
			drain := func(ctx context.Context, c *orchclient.Client) (any, error) {
				var err error
				v, err = c.Drain(ctx, cmd.Args().First(), migrate)
				return v, err
			}
			return f.show(ctx, drain, func(tw io.Writer) {
				fmt.Fprintf(tw, "%s\t%s\n", v.WorkerID, v.State)
			})
		},
	}
}

func tasksCommand() *cli.Command {
	var (
		f      orchFlags
		status string
	)
	return &cli.Command{
		Name:  "tasks",
		Usage: "list the orchestrator's tasks (newest 1000): status, model, priority, worker, tokens",
		Flags: append(f.flags(), &cli.StringFlag{Name: "status", Usage: "only queued, running, succeeded, failed or cancelled", Destination: &status}),
		Action: func(ctx context.Context, _ *cli.Command) error {
			var out struct {
				Tasks []api.TaskStatus `json:"tasks"`
			}
			list := func(ctx context.Context, c *orchclient.Client) (v any, err error) {
				out.Tasks, err = c.Tasks(ctx, status)
				return out, err
			}
			return f.show(ctx, list, func(tw io.Writer) {
				fmt.Fprintln(tw, "ID\tSTATUS\tMODEL\tPRIORITY\tWORKER\tTOKENS\tATTEMPTS\tAGE\tNOTE")
				for _, t := range out.Tasks {
					note := ""
					switch {
					case t.Error != nil:
						note = t.Error.Code
					case t.Status == api.TaskQueued && t.Explanation != nil:
						note = t.Explanation.Summary
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", t.TaskID, t.Status, t.Model, t.Priority, dash(t.WorkerID),
						t.TokensOut, t.Attempts, time.Since(t.CreatedAt).Round(time.Second), note)
				}
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
