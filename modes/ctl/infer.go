package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

// exitInterrupted is the status of a command stopped by Ctrl-C, as shells report it.
const exitInterrupted = 130

func inferCommand() *cli.Command {
	var (
		worker, prompt, system, token string
		maxTokens, seed               int64
		temperature                   float64
		raw, ignoreEOS                bool
		retries                       int
	)
	return &cli.Command{
		Name:  "infer",
		Usage: "stream a generation from a worker to stdout (stats on stderr; Ctrl-C cancels the job)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "worker", Usage: "worker address HOST:PORT (required)", Destination: &worker},
			&cli.StringFlag{Name: "prompt", Usage: "the user message (required)", Destination: &prompt},
			&cli.StringFlag{Name: "system", Usage: "a system message", Destination: &system},
			&cli.BoolFlag{Name: "raw", Usage: "send the prompt as is, without the chat template", Destination: &raw},
			&cli.BoolFlag{Name: "ignore-eos", Usage: "keep generating past end-of-generation tokens (benchmarks)", Destination: &ignoreEOS},
			&cli.Int64Flag{Name: "max-tokens", Value: 256, Destination: &maxTokens},
			&cli.Float64Flag{Name: "temperature", Value: api.DefaultTemperature, Destination: &temperature},
			&cli.Int64Flag{Name: "seed", Value: -1, Usage: "sampling seed (-1: the worker picks one and reports it)", Destination: &seed},
			&cli.StringFlag{Name: "token", Usage: "the worker's bearer token", Sources: cli.EnvVars("LLORCH_WORKER_TOKEN"), Destination: &token},
			&cli.IntFlag{Name: "busy-retries", Value: 5, Usage: "retries, with backoff, while every slot is busy", Destination: &retries},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if worker == "" || prompt == "" {
				return cli.Exit("ctl infer: --worker and --prompt are required", 2)
			}
			if _, err := api.BaseURL(worker); err != nil {
				return cli.Exit(fmt.Sprintf("ctl infer: --worker %q: %v", worker, err), 2)
			}
			req := &api.ExecuteRequest{MaxTokens: ptr(int(maxTokens)), Temperature: &temperature, IgnoreEOS: ignoreEOS}
			if seed >= 0 {
				req.Seed = &seed
			}
			switch {
			case raw && system != "":
				return cli.Exit("ctl infer: --system needs the chat template; drop --raw", 2)
			case raw:
				req.Prompt = prompt
			default:
				if system != "" {
					req.Messages = append(req.Messages, api.Message{Role: "system", Content: system})
				}
				req.Messages = append(req.Messages, api.Message{Role: "user", Content: prompt})
			}
			c := workerclient.New(worker, token, &http.Client{})
			return infer(ctx, c, req, retries, cmd.Root().Writer, cmd.Root().ErrWriter)
		},
	}
}

func ptr[T any](v T) *T { return &v }

// infer streams one job. It returns a cli exit error: 1 for failures, 130
// after Ctrl-C (the job is cancelled on the worker first).
func infer(ctx context.Context, c *workerclient.Client, req *api.ExecuteRequest, retries int, stdout, stderr io.Writer) error {
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	start := time.Now()
	// The stream outlives Ctrl-C long enough to cancel the job cleanly.
	streamCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	st, err := executeWithRetry(ctx, streamCtx, c, req, retries)
	if err != nil {
		if ctx.Err() != nil {
			return cli.Exit("", exitInterrupted)
		}
		return cli.Exit("ctl infer: "+err.Error(), 1)
	}
	defer st.Close()
	events := make(chan api.Event)
	errs := make(chan error, 1)
	go func() {
		for {
			ev, err := st.Next()
			if err != nil {
				errs <- err
				return
			}
			events <- ev
			if ev.Terminal() {
				return
			}
		}
	}()
	var (
		jobID  string
		tokens int
		first  time.Time
	)
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if jobID != "" {
				if _, err := c.Cancel(cctx, jobID); err != nil {
					fmt.Fprintf(stderr, "\nctl infer: cancel %s: %v\n", jobID, err)
				} else {
					fmt.Fprintf(stderr, "\nctl infer: cancelled job %s\n", jobID)
				}
			}
			return cli.Exit("", exitInterrupted)
		case err := <-errs:
			return cli.Exit(fmt.Sprintf("\nctl infer: stream broken: %v", err), 1)
		case ev := <-events:
			switch {
			case ev.Started != nil:
				jobID = ev.Started.JobID
			case ev.Token != nil:
				if tokens == 0 {
					first = time.Now()
				}
				tokens++
				if _, err := io.WriteString(stdout, ev.Token.T); err != nil {
					return cli.Exit(err.Error(), 1)
				}
			case ev.Error != nil:
				return cli.Exit(fmt.Sprintf("\nctl infer: %s: %s", ev.Error.Code, ev.Error.Message), 1)
			case ev.End != nil:
				fmt.Fprintln(stdout)
				fmt.Fprintln(stderr, stats(ev.End, start, first))
				return nil
			}
		}
	}
}

func stats(end *api.End, start, first time.Time) string {
	ttft := time.Duration(0)
	if !first.IsZero() {
		ttft = first.Sub(start)
	}
	rate := 0.0
	if end.DecodeTimeMs > 0 {
		rate = float64(end.TokensOut) / (end.DecodeTimeMs / 1000)
	}
	return fmt.Sprintf("tokens %d, prompt %d (cached %d), time to first token %d ms, %.1f tokens/s, stop %s",
		end.TokensOut, end.PromptTokens, end.CachedTokens, ttft.Milliseconds(), rate, end.StopReason)
}

// executeWithRetry retries while every slot is busy, with exponential backoff.
// ctx bounds the waiting; streamCtx is the stream's own.
func executeWithRetry(ctx, streamCtx context.Context, c *workerclient.Client, req *api.ExecuteRequest, retries int) (*workerclient.Stream, error) {
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		st, err := c.Execute(streamCtx, req)
		var se *workerclient.StatusError
		if !errors.As(err, &se) {
			return st, err
		}
		switch {
		case se.Status == 0:
			return nil, fmt.Errorf("worker unreachable: %s", se.Err.Message)
		case se.Err.Code != api.CodeAllSlotsBusy || attempt >= retries:
			if se.Err.Code == api.CodeAllSlotsBusy {
				return nil, fmt.Errorf("worker busy: %s (gave up after %d retries)", se.Err.Message, retries)
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 4*time.Second)
	}
}
