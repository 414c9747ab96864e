package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/detect"
	"github.com/llorch/llorch/core/store"
)

func backendsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "backends",
		Usage: "which inference backends this host can run",
		Commands: []*cli.Command{
			{
				Name:  "detect",
				Usage: "probe cpu, cuda and metal, and record the result",
				Action: func(ctx context.Context, _ *cli.Command) error {
					rep, err := e.detect(ctx)
					if err != nil {
						return exit1(err)
					}
					return e.printBackends(rep)
				},
			},
			{
				Name:  "list",
				Usage: "show the recorded detection (run detect first)",
				Action: func(ctx context.Context, _ *cli.Command) error {
					rep, err := e.backends(ctx)
					if err != nil {
						return exit1(err)
					}
					return e.printBackends(rep)
				},
			},
		},
	}
}

// detect probes the host and records the report.
func (e *env) detect(ctx context.Context) (detect.Report, error) {
	rep := detect.Detect(ctx, detect.Options{NvidiaSMI: os.Getenv("LLORCH_NVIDIA_SMI"), LibDir: cudaLibDir()})
	return rep, e.withPool(func(db *store.Pool) error { return db.PutBackends(rep) })
}

// backends returns the recorded report, detecting once if there is none.
func (e *env) backends(ctx context.Context) (detect.Report, error) {
	var rep detect.Report
	err := e.withPool(func(db *store.Pool) error { return db.Backends(&rep) })
	if errors.Is(err, store.ErrNotFound) {
		return e.detect(ctx)
	}
	return rep, err
}

// cudaLibDir is the directory the worker loads the CUDA backend library from:
// the first of $LLORCH_LIB_PATH and <dir of the executable>/../lib/llorch that
// holds it (else the first of them, for the report's reason).
func cudaLibDir() string {
	exe, _ := os.Executable()
	dirs := detect.LibDirs(os.Getenv("LLORCH_LIB_PATH"), exe)
	if len(dirs) == 0 {
		return ""
	}
	if p, err := detect.FindLib(detect.CUDALib, dirs); err == nil {
		return filepath.Dir(p)
	}
	return dirs[0]
}

func (e *env) printBackends(rep detect.Report) error {
	return e.print(rep, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "BACKEND\tAVAILABLE\tDETAILS")
		for _, b := range rep.Backends {
			detail := b.Reason
			switch {
			case !b.Available:
			case b.CPU != nil:
				detail = fmt.Sprintf("%s, %d cores / %d threads, %s RAM, %s", b.CPU.Model, b.CPU.PhysicalCores, b.CPU.LogicalCores,
					api.SizeText(int64(b.CPU.MemTotalBytes)), strings.Join(b.CPU.Features, " "))
			case len(b.Devices) > 0:
				var ds []string
				for _, d := range b.Devices {
					ds = append(ds, fmt.Sprintf("#%d %s (%s)", d.Index, d.Name, api.SizeText(int64(d.MemTotalBytes))))
				}
				detail = strings.Join(ds, "; ")
			}
			fmt.Fprintf(w, "%s\t%v\t%s\n", b.Name, b.Available, detail)
		}
	})
}
