package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
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
		&cli.BoolFlag{Name: "json", Usage: "print the orchestrator's JSON", Destination: &f.json},
	}
}

// get fetches path from the orchestrator into v; it returns the raw body too.
func (f *orchFlags) get(ctx context.Context, path string, v any) ([]byte, error) {
	base := strings.TrimRight(f.url, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	if f.key != "" {
		req.Header.Set("Authorization", "Bearer "+f.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ctl: orchestrator unreachable: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var body api.ErrorBody
		if json.Unmarshal(data, &body) == nil && body.Error != nil {
			return nil, fmt.Errorf("ctl: orchestrator answered %d: %s", resp.StatusCode, body.Error.Message)
		}
		return nil, fmt.Errorf("ctl: orchestrator answered %d", resp.StatusCode)
	}
	return data, json.Unmarshal(data, v)
}

// show fetches path into v and prints it: the raw JSON with --json, else the
// table table writes.
func (f *orchFlags) show(ctx context.Context, path string, v any, table func(tw io.Writer)) error {
	raw, err := f.get(ctx, path, v)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if f.json {
		_, err := os.Stdout.Write(append(raw, '\n'))
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func workersCommand() *cli.Command {
	var f orchFlags
	return &cli.Command{
		Name:  "workers",
		Usage: "list the orchestrator's workers: state, model, slots, load, last seen",
		Flags: f.flags(),
		Action: func(ctx context.Context, _ *cli.Command) error {
			var out struct{ Workers []api.WorkerView }
			return f.show(ctx, "/v2/workers", &out, func(tw io.Writer) {
				fmt.Fprintln(tw, "ID\tSTATE\tMODEL\tPOOL\tSLOTS\tTOK/S\tLAST SEEN\tURL")
				for _, w := range out.Workers {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%.1f\t%s ago\t%s\n", w.WorkerID, w.State, w.Model.ID, dash(w.Pool),
						w.Assigned, w.Slots, w.TokensPerSecond, time.Since(w.LastSeen).Round(time.Second), w.URL)
				}
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
			var out struct{ Tasks []api.TaskStatus }
			path := "/v2/tasks"
			if status != "" {
				path += "?status=" + url.QueryEscape(status)
			}
			return f.show(ctx, path, &out, func(tw io.Writer) {
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
