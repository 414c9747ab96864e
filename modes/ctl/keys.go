package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage the orchestrator's API keys: create (the key is shown once), list, update, revoke",
		Commands: []*cli.Command{
			keysCreateCommand(), keysListCommand(), keysUpdateCommand(), keysRevokeCommand(),
		},
	}
}

// keySpecFlags are a key's settings as flags; set tells which were given.
type keySpecFlags struct {
	role, maxPriority, models string
	weight, rpm, tpm          int
	maxRunning, maxQueued     int
	perDay, perMonth          int64
}

func (k *keySpecFlags) flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "role", Usage: "user (tasks and /v1, its own tasks) or admin (everything); default user", Destination: &k.role},
		&cli.IntFlag{Name: "weight", Usage: "share in fair queueing, 1..1000 (default 1)", Destination: &k.weight},
		&cli.IntFlag{Name: "rpm", Usage: "requests per minute (0: no limit)", Destination: &k.rpm},
		&cli.IntFlag{Name: "tpm", Usage: "tokens (prompt + generated) per minute (0: no limit)", Destination: &k.tpm},
		&cli.IntFlag{Name: "max-running", Usage: "tasks running at once; more wait in the queue (0: no limit)", Destination: &k.maxRunning},
		&cli.IntFlag{Name: "max-queued", Usage: "tasks waiting at once; more are refused (0: no limit)", Destination: &k.maxQueued},
		&cli.StringFlag{Name: "max-priority", Usage: "batch: interactive tasks are refused; interactive (or empty): both", Destination: &k.maxPriority},
		&cli.StringFlag{Name: "models", Usage: "models the key may use, comma-separated (empty: all)", Destination: &k.models},
		&cli.Int64Flag{Name: "tokens-per-day", Usage: "token budget per UTC day (0: none)", Destination: &k.perDay},
		&cli.Int64Flag{Name: "tokens-per-month", Usage: "token budget per UTC month (0: none)", Destination: &k.perMonth},
	}
}

// limitFlag is the flag of one key limit and how it sets that limit from
// the flags' values.
type limitFlag struct {
	name string
	set  func(k *keySpecFlags, l *api.KeyLimits)
}

// limitFlags are the flags of a key's limits.
var limitFlags = []limitFlag{
	{"rpm", func(k *keySpecFlags, l *api.KeyLimits) { l.RequestsPerMinute = k.rpm }},
	{"tpm", func(k *keySpecFlags, l *api.KeyLimits) { l.TokensPerMinute = k.tpm }},
	{"max-running", func(k *keySpecFlags, l *api.KeyLimits) { l.MaxRunning = k.maxRunning }},
	{"max-queued", func(k *keySpecFlags, l *api.KeyLimits) { l.MaxQueued = k.maxQueued }},
	{"max-priority", func(k *keySpecFlags, l *api.KeyLimits) { l.MaxPriority = k.maxPriority }},
	{"models", func(k *keySpecFlags, l *api.KeyLimits) {
		l.Models = nil
		for _, m := range strings.Split(k.models, ",") {
			if m = strings.TrimSpace(m); m != "" {
				l.Models = append(l.Models, m)
			}
		}
	}},
	{"tokens-per-day", func(k *keySpecFlags, l *api.KeyLimits) { l.TokensPerDay = k.perDay }},
	{"tokens-per-month", func(k *keySpecFlags, l *api.KeyLimits) { l.TokensPerMonth = k.perMonth }},
}

// apply sets the limits cmd was given on l.
func (k *keySpecFlags) apply(cmd *cli.Command, l *api.KeyLimits) {
	for _, f := range limitFlags {
		if cmd.IsSet(f.name) {
			f.set(k, l)
		}
	}
}

// limitsSet reports whether cmd was given a limit.
func (k *keySpecFlags) limitsSet(cmd *cli.Command) bool {
	return slices.ContainsFunc(limitFlags, func(f limitFlag) bool { return cmd.IsSet(f.name) })
}

// oneName is the NAME argument of a keys command.
func oneName(cmd *cli.Command) (string, error) {
	if cmd.NArg() != 1 {
		return "", cli.Exit(fmt.Sprintf("ctl: keys %s takes one NAME", cmd.Name), 2)
	}
	return cmd.Args().First(), nil
}

func keysCreateCommand() *cli.Command {
	var (
		f orchFlags
		k keySpecFlags
	)
	return &cli.Command{
		Name:      "create",
		Usage:     "create an API key and print it (once: the orchestrator keeps only its SHA-256)",
		ArgsUsage: "NAME",
		Flags:     append(f.flags(), k.flags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			name, err := oneName(cmd)
			if err != nil {
				return err
			}
			spec := api.KeySpec{Name: name, Role: k.role, Weight: k.weight}
			k.apply(cmd, &spec.Limits)
			var kc api.KeyCreated
			create := func(ctx context.Context, c *orchclient.Client) (any, error) {
				kc, err = c.CreateKey(ctx, spec)
				return kc, err
			}
			// The key alone on stdout (KEY=$(llorch ctl keys create NAME)),
			// the rest on stderr.
			err = f.show(ctx, create, func(tw io.Writer) { fmt.Fprintln(tw, kc.Key) })
			if err == nil {
				fmt.Fprintf(os.Stderr, "created key %s (role %s, fingerprint %s). It is shown only this once: store it now.\n", kc.Name, kc.Role, kc.Fingerprint)
			}
			return err
		},
	}
}

func keysListCommand() *cli.Command {
	var f orchFlags
	return &cli.Command{
		Name:  "list",
		Usage: "list the API keys (those of the key file too): name, role, weight, limits, fingerprint, source, created, revoked",
		Flags: f.flags(),
		Action: func(ctx context.Context, _ *cli.Command) error {
			var out struct {
				Keys []api.KeyView `json:"keys"`
			}
			list := func(ctx context.Context, c *orchclient.Client) (v any, err error) {
				out.Keys, err = c.Keys(ctx)
				return out, err
			}
			return f.show(ctx, list, func(tw io.Writer) {
				fmt.Fprintln(tw, "NAME\tROLE\tWEIGHT\tLIMITS\tFINGERPRINT\tSOURCE\tCREATED\tREVOKED")
				for _, v := range out.Keys {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Role, v.Weight, limitsSummary(v.Limits),
						v.Fingerprint, v.Source, when(v.CreatedAt), when(deref(v.RevokedAt)))
				}
			})
		},
	}
}

func keysUpdateCommand() *cli.Command {
	var (
		f orchFlags
		k keySpecFlags
	)
	return &cli.Command{
		Name:      "update",
		Usage:     "change a key's role, weight or limits (only the flags given; 0 or empty lifts a limit)",
		ArgsUsage: "NAME",
		Flags:     append(f.flags(), k.flags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			name, err := oneName(cmd)
			if err != nil {
				return err
			}
			var v api.KeyView
			update := func(ctx context.Context, c *orchclient.Client) (any, error) {
				var u api.KeyUpdate
				if cmd.IsSet("role") {
					u.Role = &k.role
				}
				if cmd.IsSet("weight") {
					u.Weight = &k.weight
				}
				if k.limitsSet(cmd) {
					// The API replaces the limits as a whole: start from
					// the key's.
					cur, err := c.Key(ctx, name)
					if err != nil {
						return nil, err
					}
					l := cur.Limits
					k.apply(cmd, &l)
					u.Limits = &l
				}
				if u == (api.KeyUpdate{}) {
					return nil, fmt.Errorf("nothing to change: give --role, --weight or a limit")
				}
				v, err = c.UpdateKey(ctx, name, u)
				return v, err
			}
			return f.show(ctx, update, func(tw io.Writer) {
				fmt.Fprintf(tw, "%s\t%s\tweight %d\t%s\n", v.Name, v.Role, v.Weight, limitsSummary(v.Limits))
			})
		},
	}
}

func keysRevokeCommand() *cli.Command {
	var f orchFlags
	return &cli.Command{
		Name:      "revoke",
		Usage:     "revoke a key: requests with it get 401 at once and its queued tasks end with KEY_REVOKED (running ones finish)",
		ArgsUsage: "NAME",
		Flags:     f.flags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			name, err := oneName(cmd)
			if err != nil {
				return err
			}
			var v api.KeyView
			revoke := func(ctx context.Context, c *orchclient.Client) (any, error) {
				if err := c.RevokeKey(ctx, name); err != nil {
					return nil, err
				}
				v, err = c.Key(ctx, name)
				return v, err
			}
			return f.show(ctx, revoke, func(tw io.Writer) {
				fmt.Fprintf(tw, "%s\trevoked %s\n", v.Name, when(deref(v.RevokedAt)))
			})
		},
	}
}

// limitsSummary is a key's limits in one cell: "-" for none.
func limitsSummary(l api.KeyLimits) string {
	var parts []string
	add := func(label string, v int64) {
		if v > 0 {
			parts = append(parts, label+"="+strconv.FormatInt(v, 10))
		}
	}
	add("rpm", int64(l.RequestsPerMinute))
	add("tpm", int64(l.TokensPerMinute))
	add("running", int64(l.MaxRunning))
	add("queued", int64(l.MaxQueued))
	if l.MaxPriority != "" {
		parts = append(parts, "max-priority="+l.MaxPriority)
	}
	if len(l.Models) > 0 {
		parts = append(parts, "models="+strings.Join(l.Models, ","))
	}
	add("day", l.TokensPerDay)
	add("month", l.TokensPerMonth)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// when is a time as the tables show it: UTC to the second, "-" when zero.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
