package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bench"
)

// benchFlags are what `ctl bench` reads before it builds a bench.Config.
type benchFlags struct {
	cfg                         bench.Config
	prompt, gen, conc, rate     string
	trace, out, plot            string
	seed                        int64
	sloTTFT, sloITL, sloE2E     time.Duration
	asJSON                      bool
	requests, warmup, inFlight  int64
	sharedPrefix, sessions, trn int64
}

func benchCommand() *cli.Command {
	f := &benchFlags{}
	return &cli.Command{
		Name:  "bench",
		Usage: "load-test an OpenAI-compatible server or llorch's /v2/tasks: TTFT, ITL, E2E percentiles, tokens/s, goodput, errors by code",
		Description: "Closed loop (--concurrency 1,4,8) or open loop (--rate 2/s,5/s, Poisson) sweeps, or a trace replay (--trace FILE).\n" +
			"Requests are made from --seed: two servers get the very same ones. A table on stdout (--json for the report),\n" +
			"progress on stderr. Exit 1 when every request failed, 2 for bad flags. `ctl bench plot` draws saved reports.",
		Flags:        f.flags(),
		OnUsageError: usageExit,
		Action:       f.run,
		Commands:     []*cli.Command{benchPlotCommand()},
	}
}

// usageExit makes a flag that does not parse exit 2, as other bad flags do.
func usageExit(_ context.Context, cmd *cli.Command, err error, _ bool) error {
	return cli.Exit(fmt.Sprintf("ctl %s: %v", cmd.Name, err), 2)
}

func (f *benchFlags) flags() []cli.Flag {
	c := &f.cfg
	return []cli.Flag{
		&cli.StringFlag{Name: "url", Usage: "the server's base URL (http://host:port; required)", Destination: &c.URL},
		&cli.StringFlag{Name: "api", Value: bench.APIOpenAI, Usage: "openai (/v1/...) or llorch (POST /v2/tasks, native events)", Destination: &c.API},
		&cli.StringFlag{Name: "endpoint", Value: bench.EndpointCompletions, Usage: "OpenAI endpoint: completions or chat (sessions need chat)", Destination: &c.Endpoint},
		&cli.StringFlag{Name: "model", Usage: "model to ask for (default: the first of GET /v1/models)", Destination: &c.Model},
		&cli.StringFlag{Name: "api-key", Usage: "API key (Authorization: Bearer)", Sources: cli.EnvVars("LLORCH_API_KEY"), Destination: &c.APIKey},
		&cli.StringFlag{Name: "prompt-tokens", Value: "256", Usage: "prompt length: N, uniform:MIN:MAX or normal:MEAN:SD", Destination: &f.prompt},
		&cli.StringFlag{Name: "gen-tokens", Value: "128", Usage: "tokens to generate: N, uniform:MIN:MAX or normal:MEAN:SD", Destination: &f.gen},
		&cli.Int64Flag{Name: "shared-prefix", Usage: "tokens of a prompt head (system prompt) every request shares", Destination: &f.sharedPrefix},
		&cli.Int64Flag{Name: "sessions", Usage: "multi-turn conversations (chat or llorch API; closed loop)", Destination: &f.sessions},
		&cli.Int64Flag{Name: "turns", Usage: "turns of each conversation (default 4 with --sessions)", Destination: &f.trn},
		&cli.StringFlag{Name: "trace", Usage: "replay a JSONL trace (llorch orchestrate --trace-file): arrival gaps, lengths, text when recorded", Destination: &f.trace},
		&cli.Float64Flag{Name: "trace-speed", Value: 1, Usage: "replay the trace this many times faster", Destination: &c.TraceSpeed},
		&cli.StringFlag{Name: "concurrency", Value: "1", Usage: "closed loop: requests in flight, a sweep (1,4,8)", Destination: &f.conc},
		&cli.StringFlag{Name: "rate", Usage: "open loop: Poisson arrivals, a sweep (2/s,5/s)", Destination: &f.rate},
		&cli.Int64Flag{Name: "requests", Usage: "requests per step (default: 4×concurrency, at least 8; 32 at a rate)", Destination: &f.requests},
		&cli.DurationFlag{Name: "duration", Usage: "per step: start no request after this long", Destination: &c.Duration},
		&cli.Int64Flag{Name: "warmup", Usage: "requests before each step, left out of its figures", Destination: &f.warmup},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Minute, Usage: "bound on the whole run", Destination: &c.Timeout},
		&cli.Int64Flag{Name: "max-in-flight", Value: bench.DefaultMaxInFlight, Usage: "open loop and trace: arrivals beyond this many in flight count as errors", Destination: &f.inFlight},
		&cli.BoolFlag{Name: "ignore-eos", Value: true, Usage: "ask the server to generate every requested token", Destination: &c.IgnoreEOS},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "makes the requests (lengths, text, arrivals) and the sampling seed", Destination: &f.seed},
		&cli.DurationFlag{Name: "slo-ttft", Usage: "goodput: time to first token at most this", Destination: &f.sloTTFT},
		&cli.DurationFlag{Name: "slo-itl", Usage: "goodput: mean inter-token latency at most this", Destination: &f.sloITL},
		&cli.DurationFlag{Name: "slo-e2e", Usage: "goodput: end-to-end latency at most this", Destination: &f.sloE2E},
		&cli.BoolFlag{Name: "json", Usage: "print the report as JSON instead of the table", Destination: &f.asJSON},
		&cli.StringFlag{Name: "out", Usage: "also save the report's JSON to this file", Destination: &f.out},
		&cli.StringFlag{Name: "plot", Usage: "draw the run to this .svg or .png file", Destination: &f.plot},
		&cli.StringFlag{Name: "label", Usage: "name of the run on charts and tables (default: host:port and model)", Destination: &c.Label},
	}
}

// config turns the flags into a bench.Config; an error is a bad flag.
func (f *benchFlags) config(cmd *cli.Command) (bench.Config, error) {
	c := f.cfg
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("--url is required"))
	}
	var err error
	if c.PromptTokens, err = bench.ParseLengths(f.prompt); err != nil {
		errs = append(errs, fmt.Errorf("--prompt-tokens: %w", err))
	}
	if c.GenTokens, err = bench.ParseLengths(f.gen); err != nil {
		errs = append(errs, fmt.Errorf("--gen-tokens: %w", err))
	}
	if f.rate != "" {
		if c.Rates, err = bench.ParseRates(f.rate); err != nil {
			errs = append(errs, fmt.Errorf("--rate: %w", err))
		}
	}
	if cmd.IsSet("concurrency") || f.rate == "" && f.trace == "" {
		if c.Concurrency, err = bench.ParseConcurrency(f.conc); err != nil {
			errs = append(errs, fmt.Errorf("--concurrency: %w", err))
		}
	}
	if f.trace != "" {
		c.TraceName = f.trace
		if fh, err := os.Open(f.trace); err != nil {
			errs = append(errs, fmt.Errorf("--trace: %w", err))
		} else {
			c.Trace, err = bench.ReadTrace(fh)
			fh.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("--trace %s: %w", f.trace, err))
			}
		}
		if c.Trace == nil {
			c.Trace = []api.TraceRecord{} // a trace, without records
		}
	}
	if f.sessions > 0 && !cmd.IsSet("turns") {
		f.trn = 4
	}
	if f.seed < 0 {
		errs = append(errs, fmt.Errorf("--seed must not be negative, got %d", f.seed))
	}
	ints := []struct {
		name string
		v    int64
		dst  *int
	}{
		{"--shared-prefix", f.sharedPrefix, &c.SharedPrefix}, {"--sessions", f.sessions, &c.Sessions},
		{"--turns", f.trn, &c.Turns}, {"--requests", f.requests, &c.Requests}, {"--warmup", f.warmup, &c.Warmup},
		{"--max-in-flight", f.inFlight, &c.MaxInFlight},
	}
	for _, n := range ints {
		if n.v < 0 || n.v > 1<<31-1 {
			errs = append(errs, fmt.Errorf("%s must be 0..%d, got %d", n.name, 1<<31-1, n.v))
			continue
		}
		*n.dst = int(n.v)
	}
	if f.inFlight == 0 {
		errs = append(errs, errors.New("--max-in-flight must be at least 1"))
	}
	c.Seed = uint64(f.seed)
	c.SLO = bench.SLO{TTFTMs: durMs(f.sloTTFT), ITLMs: durMs(f.sloITL), E2EMs: durMs(f.sloE2E)}
	if f.plot != "" {
		if _, err := bench.PlotFormat(f.plot); err != nil {
			errs = append(errs, fmt.Errorf("--plot: %w", err))
		}
	}
	c.Command = os.Args
	if len(errs) == 0 {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

func durMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (f *benchFlags) run(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Len() > 0 {
		return cli.Exit(fmt.Sprintf("ctl bench: unexpected argument %q (bench plot draws saved reports)", cmd.Args().First()), 2)
	}
	cfg, err := f.config(cmd)
	if err != nil {
		return cli.Exit("ctl bench: "+strings.ReplaceAll(err.Error(), "\n", "; "), 2)
	}
	stdout, stderr := writers(cmd)
	prog := newProgressLine(stderr)
	rep, err := bench.Run(ctx, cfg, prog.update)
	prog.finish()
	if err != nil {
		return cli.Exit("ctl bench: "+err.Error(), 2)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return cli.Exit("ctl bench: "+err.Error(), 1)
	}
	data = append(data, '\n')
	if f.asJSON {
		_, err = stdout.Write(data)
	} else {
		err = bench.WriteTable(stdout, rep)
	}
	if err != nil {
		return cli.Exit("ctl bench: "+err.Error(), 1)
	}
	if f.out != "" {
		if err := os.WriteFile(f.out, data, 0o644); err != nil {
			return cli.Exit("ctl bench: --out: "+err.Error(), 1)
		}
	}
	if f.plot != "" {
		if err := plotFile(f.plot, []bench.Report{rep}); err != nil {
			return cli.Exit("ctl bench: --plot: "+err.Error(), 1)
		}
	}
	if ctx.Err() != nil {
		return cli.Exit("ctl bench: interrupted", exitInterrupted)
	}
	ok, n := 0, 0
	for _, st := range rep.Steps {
		ok, n = ok+st.OK, n+st.Requests
	}
	if ok == 0 {
		return cli.Exit(fmt.Sprintf("ctl bench: all %d requests failed", n), 1)
	}
	return nil
}

// plotFile draws reports to path, the format from its extension.
func plotFile(path string, reports []bench.Report) error {
	format, err := bench.PlotFormat(path)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := bench.Plot(&b, format, reports); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func benchPlotCommand() *cli.Command {
	var out string
	return &cli.Command{
		Name:         "plot",
		Usage:        "draw saved reports (--json or --out files) on one chart: one line per report",
		ArgsUsage:    "REPORT.json...",
		Flags:        []cli.Flag{&cli.StringFlag{Name: "plot", Usage: "the chart to write: .svg or .png (required)", Destination: &out}},
		OnUsageError: usageExit,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if out == "" || cmd.Args().Len() == 0 {
				return cli.Exit("ctl bench plot: --plot FILE and at least one report are required", 2)
			}
			if _, err := bench.PlotFormat(out); err != nil {
				return cli.Exit("ctl bench plot: --plot: "+err.Error(), 2)
			}
			var reports []bench.Report
			for _, path := range cmd.Args().Slice() {
				fh, err := os.Open(path)
				if err != nil {
					return cli.Exit("ctl bench plot: "+err.Error(), 1)
				}
				rep, err := bench.ReadReport(fh)
				fh.Close()
				if err != nil {
					return cli.Exit(fmt.Sprintf("ctl bench plot: %s: %v", path, err), 1)
				}
				reports = append(reports, rep)
			}
			if err := plotFile(out, reports); err != nil {
				return cli.Exit("ctl bench plot: "+err.Error(), 1)
			}
			return nil
		},
	}
}

// progressLine shows a run's progress on stderr: one line rewritten in
// place on a terminal, else a line at the end of each phase.
type progressLine struct {
	w     io.Writer
	tty   bool
	mu    sync.Mutex
	last  time.Time
	shown bool
}

func newProgressLine(w io.Writer) *progressLine {
	fh, ok := w.(*os.File)
	return &progressLine{w: w, tty: ok && term.IsTerminal(int(fh.Fd()))}
}

func (p *progressLine) update(pr bench.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	phase := "measuring"
	if pr.Warmup {
		phase = "warm-up"
	}
	total := "?"
	if pr.Total > 0 {
		total = fmt.Sprint(pr.Total)
	}
	line := fmt.Sprintf("bench: step %d/%d %s %s %d/%s done, %d failed", pr.Step, pr.Steps, pr.Name, phase, pr.Done, total, pr.Errors)
	end := pr.Total > 0 && pr.Done == pr.Total
	switch {
	case p.tty && (end || time.Since(p.last) >= 100*time.Millisecond):
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.last, p.shown = time.Now(), true
	case !p.tty && end:
		fmt.Fprintln(p.w, line)
	}
}

func (p *progressLine) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}
