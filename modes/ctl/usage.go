package ctl

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
)

func usageCommand() *cli.Command {
	var (
		f      orchFlags
		q      orchclient.UsageQuery
		by     string
		csvOut bool
	)
	return &cli.Command{
		Name: "usage",
		Usage: "what each key used of each model: requests, prompt, cached and generated tokens, errors, queue and service time " +
			"(an admin key sees every key, a user key its own)",
		Flags: append(f.flags(),
			&cli.StringFlag{Name: "key", Usage: "only this key (by name)", Destination: &q.Key},
			&cli.StringFlag{Name: "model", Usage: "only this model", Destination: &q.Model},
			&cli.StringFlag{Name: "since", Value: "24h", Usage: "from: an RFC 3339 time or a duration back from now (24h, 720h)", Destination: &q.Since},
			&cli.StringFlag{Name: "until", Usage: "to: an RFC 3339 time or a duration back from now (default: now)", Destination: &q.Until},
			&cli.StringFlag{Name: "by", Usage: "rows per hour (key, model and hour), key or model (default: per key and model)", Destination: &by},
			&cli.BoolFlag{Name: "csv", Usage: "print CSV", Destination: &csvOut},
		),
		Action: func(ctx context.Context, _ *cli.Command) error {
			switch by {
			case "", "hour", "key", "model":
			default:
				return cli.Exit("ctl: --by is hour, key or model", 2)
			}
			if csvOut && f.json {
				return cli.Exit("ctl: --json and --csv exclude each other", 2)
			}
			c, err := orchclient.New(f.url, f.key, nil)
			if err != nil {
				return cli.Exit("ctl: "+err.Error(), 2)
			}
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			u, err := c.Usage(ctx, q)
			if err != nil {
				return cli.Exit("ctl: "+err.Error(), 1)
			}
			u.Rows = groupUsage(u.Rows, by)
			switch {
			case f.json:
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(u)
			case csvOut:
				return writeUsageCSV(os.Stdout, u, by)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			writeUsageTable(tw, u, by)
			return tw.Flush()
		},
	}
}

// groupUsage sums hourly rows per key and model (by ""), per key or per
// model; "hour" keeps them as they are. Groups are in name order.
func groupUsage(rows []api.UsageRow, by string) []api.UsageRow {
	if by == "hour" {
		return rows
	}
	type group struct{ key, model string }
	sums := map[group]*api.UsageRow{}
	var order []group
	for _, r := range rows {
		g := group{r.Key, r.Model}
		switch by {
		case "key":
			g.model = ""
		case "model":
			g.key = ""
		}
		s := sums[g]
		if s == nil {
			s = &api.UsageRow{Key: g.key, Model: g.model}
			sums[g] = s
			order = append(order, g)
		}
		s.Add(r)
	}
	slices.SortFunc(order, func(a, b group) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.model, b.model)
	})
	out := make([]api.UsageRow, len(order))
	for i, g := range order {
		out[i] = *sums[g]
	}
	return out
}

// usageColumns are the columns of a row (the hour's only per hour).
func usageColumns(by string) []string {
	cols := []string{"KEY", "MODEL"}
	switch by {
	case "hour":
		cols = append([]string{"HOUR"}, cols...)
	case "key":
		cols = []string{"KEY"}
	case "model":
		cols = []string{"MODEL"}
	}
	return append(cols, "REQUESTS", "PROMPT", "CACHED", "GENERATED", "ERRORS", "QUEUE S", "SERVICE S")
}

func usageCells(r api.UsageRow, by string, total bool) []string {
	var cells []string
	switch {
	case total && by == "hour":
		cells = []string{"total", "", ""}
	case total && by == "":
		cells = []string{"total", ""}
	case total:
		cells = []string{"total"}
	case by == "hour":
		cells = []string{r.Hour.UTC().Format("2006-01-02T15Z"), dash(r.Key), dash(r.Model)}
	case by == "key":
		cells = []string{dash(r.Key)}
	case by == "model":
		cells = []string{dash(r.Model)}
	default:
		cells = []string{dash(r.Key), dash(r.Model)}
	}
	return append(cells, strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.PromptTokens, 10),
		strconv.FormatInt(r.CachedPromptTokens, 10), strconv.FormatInt(r.GeneratedTokens, 10), errorCells(r.Errors),
		strconv.FormatFloat(r.QueueMs/1000, 'f', 1, 64), strconv.FormatFloat(r.ServiceMs/1000, 'f', 1, 64))
}

// errorCells is "CODE=n CODE=n" in code order, "-" for none.
func errorCells(errs map[string]int64) string {
	if len(errs) == 0 {
		return "-"
	}
	codes := make([]string, 0, len(errs))
	for c := range errs {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for i, c := range codes {
		codes[i] = fmt.Sprintf("%s=%d", c, errs[c])
	}
	return strings.Join(codes, " ")
}

func writeUsageTable(w io.Writer, u api.Usage, by string) {
	fmt.Fprintln(w, strings.Join(usageColumns(by), "\t"))
	for _, r := range u.Rows {
		fmt.Fprintln(w, strings.Join(usageCells(r, by, false), "\t"))
	}
	fmt.Fprintln(w, strings.Join(usageCells(u.Totals, by, true), "\t"))
}

func writeUsageCSV(w io.Writer, u api.Usage, by string) error {
	cw := csv.NewWriter(w)
	cols := usageColumns(by)
	for i, c := range cols {
		cols[i] = strings.ToLower(strings.ReplaceAll(c, " ", "_"))
	}
	if err := cw.Write(cols); err != nil {
		return err
	}
	for _, r := range u.Rows {
		cells := usageCells(r, by, false)
		for i, c := range cells {
			if c == "-" {
				cells[i] = ""
			}
		}
		if err := cw.Write(cells); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
