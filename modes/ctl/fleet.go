package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/fleetfile"
	"github.com/llorch/llorch/core/orchclient"
)

// exitPlanChanges is `fleet diff --detailed-exitcode`'s status when the plan
// changes something (terraform plan -detailed-exitcode's convention).
const exitPlanChanges = 2

// fleetCommand is `llorch ctl fleet apply|diff|status`.
func fleetCommand() *cli.Command {
	return &cli.Command{
		Name:  "fleet",
		Usage: "make the orchestrator's pools and models match a fleet file (diff, apply), and show the fleet (status)",
		Description: "A fleet file is YAML with pools: and models: lists (the JSON of POST /v2/pools and PUT /v2/models/{id});\n" +
			"see the README. diff prints what apply would do; apply prints the same plan, asks, and carries it out.\n" +
			"Pools and models the file does not name are kept unless --prune is given.",
		Commands: []*cli.Command{fleetDiffCommand(), fleetApplyCommand(), fleetStatusCommand()},
	}
}

// fleetFileFlags are -f and --prune.
type fleetFileFlags struct {
	orchFlags
	file  string
	prune bool
}

func (f *fleetFileFlags) flags() []cli.Flag {
	return append(f.orchFlags.flags(),
		&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the fleet file (- reads stdin)", Destination: &f.file, Required: true},
		&cli.BoolFlag{Name: "prune", Usage: "delete pools and models the file does not declare", Destination: &f.prune})
}

// plan reads the fleet file and plans it against the orchestrator.
func (f *fleetFileFlags) plan(ctx context.Context, stdin io.Reader) (*orchclient.Client, []fleetfile.Change, error) {
	ff, err := readFleetFile(f.file, stdin)
	if err != nil {
		return nil, nil, cli.Exit("ctl fleet: "+err.Error(), 1)
	}
	c, err := orchclient.New(f.url, f.key, nil)
	if err != nil {
		return nil, nil, cli.Exit("ctl fleet: "+err.Error(), 2)
	}
	plan, err := planFleet(ctx, c, ff, f.prune)
	if err != nil {
		return nil, nil, cli.Exit("ctl fleet: "+err.Error(), 1)
	}
	return c, plan, nil
}

func readFleetFile(path string, stdin io.Reader) (api.FleetFile, error) {
	if path == "-" {
		return fleetfile.Load("stdin", stdin)
	}
	fh, err := os.Open(path)
	if err != nil {
		return api.FleetFile{}, err
	}
	defer fh.Close()
	return fleetfile.Load(path, fh)
}

// planFleet plans a fleet file against what the orchestrator holds now.
func planFleet(ctx context.Context, c *orchclient.Client, ff api.FleetFile, prune bool) ([]fleetfile.Change, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pools, err := c.Pools(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing pools: %w", err)
	}
	models, err := c.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing models: %w", err)
	}
	return fleetfile.Plan(fleetfile.CurrentFrom(pools, models), ff, prune), nil
}

// printPlan prints a plan for a person, or as {"changes": [...]} with --json.
func printPlan(w io.Writer, plan []fleetfile.Change, asJSON bool) error {
	if !asJSON {
		return fleetfile.FormatPlan(w, plan)
	}
	if plan == nil {
		plan = []fleetfile.Change{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Changes []fleetfile.Change `json:"changes"`
	}{plan})
}

func fleetDiffCommand() *cli.Command {
	var (
		f        fleetFileFlags
		detailed bool
	)
	return &cli.Command{
		Name:  "diff",
		Usage: "print what `fleet apply` would change (+ create, ~ update, - delete); writes nothing",
		Flags: append(f.flags(),
			&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 2 when the plan changes something (0: no changes, 1: error)", Destination: &detailed}),
		Action: func(ctx context.Context, _ *cli.Command) error {
			_, plan, err := f.plan(ctx, os.Stdin)
			if err != nil {
				return err
			}
			if err := printPlan(os.Stdout, plan, f.json); err != nil {
				return cli.Exit("ctl fleet diff: "+err.Error(), 1)
			}
			if detailed && fleetfile.HasChanges(plan) {
				return cli.Exit("", exitPlanChanges)
			}
			return nil
		},
	}
}

func fleetApplyCommand() *cli.Command {
	var (
		f   fleetFileFlags
		yes bool
	)
	return &cli.Command{
		Name:  "apply",
		Usage: "make the orchestrator match a fleet file: print the plan, ask, then create, update (and with --prune delete)",
		Description: "Without --yes, apply asks for confirmation on a terminal; when stdin is not a terminal (a script,\n" +
			"a pipe, -f -) it refuses to change anything without --yes. Applying the same file again changes nothing.",
		Flags: append(f.flags(),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "apply without asking", Destination: &yes}),
		Action: func(ctx context.Context, _ *cli.Command) error {
			c, plan, err := f.plan(ctx, os.Stdin)
			if err != nil {
				return err
			}
			if err := printPlan(os.Stdout, plan, f.json); err != nil {
				return cli.Exit("ctl fleet apply: "+err.Error(), 1)
			}
			if !fleetfile.HasChanges(plan) {
				return nil
			}
			if !yes {
				if f.file == "-" || !term.IsTerminal(int(os.Stdin.Fd())) {
					return cli.Exit("ctl fleet apply: not applied: stdin is not a terminal to ask on; give --yes to apply without asking", 1)
				}
				ok, err := confirm(os.Stdin, os.Stdout)
				if err != nil {
					return cli.Exit("ctl fleet apply: "+err.Error(), 1)
				}
				if !ok {
					return cli.Exit("ctl fleet apply: not applied", 1)
				}
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			log := io.Writer(os.Stdout)
			if f.json {
				log = os.Stderr // stdout holds the plan's JSON alone
			}
			if err := fleetfile.Apply(actx, c, plan, log); err != nil {
				return cli.Exit("ctl fleet apply: "+err.Error()+" (the steps before it are done; apply again to continue)", 1)
			}
			return nil
		},
	}
}

// confirm asks whether to apply; only "yes" (or "y") is yes.
func confirm(in io.Reader, out io.Writer) (bool, error) {
	fmt.Fprint(out, "apply these changes? type yes to apply: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		if err == io.EOF {
			return false, nil
		}
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "yes", "y":
		return true, nil
	}
	return false, nil
}

// fleetStatus is what `fleet status --json` prints.
type fleetStatus struct {
	Pools  []api.PoolView   `json:"pools"`
	Models []api.ModelView  `json:"models"`
	Events []api.FleetEvent `json:"events"`
}

// statusEvents is how many of the newest fleet events status shows.
const statusEvents = 10

func fleetStatusCommand() *cli.Command {
	var f orchFlags
	return &cli.Command{
		Name:  "status",
		Usage: "show the declared models (kind, replicas, where they run, memory need), the pools (state, RAM, workers) and the last fleet events",
		Flags: f.flags(),
		Action: func(ctx context.Context, _ *cli.Command) error {
			var st fleetStatus
			list := func(ctx context.Context, c *orchclient.Client) (v any, err error) {
				if st.Models, err = c.Models(ctx); err != nil {
					return nil, fmt.Errorf("listing models: %w", err)
				}
				if st.Pools, err = c.Pools(ctx); err != nil {
					return nil, fmt.Errorf("listing pools: %w", err)
				}
				if st.Events, err = c.FleetEvents(ctx, 0, statusEvents); err != nil {
					return nil, fmt.Errorf("listing fleet events: %w", err)
				}
				if st.Pools == nil {
					st.Pools = []api.PoolView{}
				}
				if st.Models == nil {
					st.Models = []api.ModelView{}
				}
				if st.Events == nil {
					st.Events = []api.FleetEvent{}
				}
				return st, nil
			}
			return f.show(ctx, list, func(tw io.Writer) { writeFleetStatus(tw, st) })
		},
	}
}

// writeFleetStatus writes the three tables of `fleet status` (tw is a
// tabwriter: each table is flushed apart so that its columns are its own).
func writeFleetStatus(w io.Writer, st fleetStatus) {
	flush := func() {
		if tw, ok := w.(*tabwriter.Writer); ok {
			tw.Flush()
		}
	}
	fmt.Fprintln(w, "MODEL\tKIND\tSTATE\tREADY/STARTING/DESIRED\tPOOLS/WORKERS\tNEED\tLAST ERROR")
	if len(st.Models) == 0 {
		fmt.Fprintln(w, "(no models declared)")
	}
	for _, m := range st.Models {
		var where []string
		for _, r := range m.Workers {
			where = append(where, r.Pool+"/"+dash(r.WorkerID))
		}
		need := "-"
		if m.Fit != nil && m.Fit.NeedBytes > 0 {
			need = gib(m.Fit.NeedBytes)
		}
		kind := "generation"
		if m.Embedding {
			kind = "embedding"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\n", m.ID, kind, dash(m.State), m.Replicas.Ready, m.Replicas.Starting, m.Replicas.Desired,
			dash(strings.Join(where, ",")), need, dash(short(m.LastError)))
	}
	flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "POOL\tTRANSPORT\tHOST\tSTATE\tRAM FREE/TOTAL\tWORKERS\tLAST ERROR")
	if len(st.Pools) == 0 {
		fmt.Fprintln(w, "(no pools)")
	}
	for _, p := range st.Pools {
		ram, workers := "-", "-"
		if inv := p.Inventory; inv != nil {
			ram = gib(inv.RAMFreeBytes) + "/" + gib(inv.RAMTotalBytes)
			workers = fmt.Sprint(len(inv.Workers))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, dash(p.Transport), dash(p.Host), dash(p.State), ram, workers, dash(short(p.LastError)))
	}
	flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "TIME\tEVENT\tPOOL\tMODEL\tWORKER\tREASON")
	if len(st.Events) == 0 {
		fmt.Fprintln(w, "(no fleet events)")
	}
	for _, e := range st.Events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05"), e.Kind, dash(e.Pool), dash(e.Model), dash(e.Worker), dash(short(e.Reason)))
	}
}

// gib prints bytes as GiB with one decimal.
func gib(n uint64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// short keeps a table cell on one line and under 80 characters.
func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 80 {
		return string(r[:79]) + "…"
	}
	return s
}
