// Command mkmodel writes a synthetic GGUF model for tests and benchmarks.
//
//	go run ./tools/mkmodel -preset tiny|qwen05 -out model.gguf [-type f16]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkmodel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	preset := fs.String("preset", "tiny", "model shape: "+strings.Join(synth.PresetNames(), ", "))
	out := fs.String("out", "", "output `path` of the GGUF file (required)")
	typ := fs.String("type", "f16", "tensor `type`: "+strings.Join(synth.Types(), ", "))
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: mkmodel -preset NAME -out PATH [-type f16|q8_0|q4_0]")
		return 2
	}
	if err := mkmodel(*preset, *out, *typ, stdout); err != nil {
		fmt.Fprintln(stderr, "mkmodel:", err)
		return 1
	}
	return 0
}

func mkmodel(presetName, out, typ string, stdout io.Writer) error {
	p, err := synth.PresetByName(presetName)
	if err != nil {
		return err
	}
	start := time.Now()
	quantize := func(in, out, typ string) error { return llamacpp.Quantize(in, out, typ, runtime.NumCPU()) }
	if err := synth.WriteType(out, p, typ, quantize); err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: preset %s, %s, %d params, %.1f MB in %s\n",
		out, p.Name, strings.ToLower(typ), p.NumParams(), float64(st.Size())/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}
