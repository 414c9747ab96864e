package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/workerd"
)

func benchCommand() *cli.Command {
	var (
		cfg    workerd.BenchConfig
		model  string
		bf     backendFlags
		asJSON bool
	)
	return &cli.Command{
		Name:  "bench",
		Usage: "measure prompt and generation tokens/s the way llama-bench does",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model file (required)", Destination: &model},
			&cli.StringFlag{Name: "backend", Value: "cpu", Usage: "inference backend: " + strings.Join(backendNames, ", "), Destination: &bf.backend},
			&cli.IntFlag{Name: "gpu", Usage: "GPU index, as nvidia-smi numbers them (cuda)", Destination: &bf.gpu},
			&cli.StringFlag{Name: "gpu-layers", Value: "all", Usage: "layers to offload to the GPU: a count or all (cuda)", Destination: &bf.gpuLayers},
			&cli.StringFlag{Name: "cpu-variant", Value: "auto", Usage: "CPU backend: auto, off, or a variant name (see worker --help)", Destination: &bf.cpuVariant, Sources: cli.EnvVars("LLORCH_CPU_VARIANT")},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Value: defaultThreads(), Destination: &cfg.Threads},
			&cli.IntFlag{Name: "n-prompt", Aliases: []string{"p"}, Value: 128, Usage: "prompt tokens (0 skips the test)", Destination: &cfg.Prompt},
			&cli.IntFlag{Name: "n-gen", Aliases: []string{"n"}, Value: 64, Usage: "generated tokens (0 skips the test)", Destination: &cfg.Gen},
			&cli.IntFlag{Name: "depth", Aliases: []string{"d"}, Usage: "KV cache depth: tokens evaluated (untimed) before each test", Destination: &cfg.Depth},
			&cli.IntFlag{Name: "reps", Aliases: []string{"r"}, Value: 5, Usage: "repetitions", Destination: &cfg.Reps},
			&cli.IntFlag{Name: "batch", Aliases: []string{"b"}, Value: 512, Destination: &cfg.Batch},
			&cli.StringFlag{Name: "flash-attn", Value: "off", Usage: "auto, on, off", Destination: &cfg.FlashAttn},
			&cli.BoolFlag{Name: "baseline", Usage: "also time each test with llama.cpp driven from C (llama-bench's loop), rep by rep", Destination: &cfg.Baseline},
			&cli.BoolFlag{Name: "json", Usage: "print JSON", Destination: &asJSON},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			llamacpp.SetLogger(log)
			place, err := prepareBackend(bf, log)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			if model == "" {
				return cli.Exit("worker bench: --model is required", 1)
			}
			if err := checkModel(model); err != nil {
				return cli.Exit(err.Error(), 1)
			}
			m, err := llamacpp.Load(model, place.params())
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			defer m.Close()
			stats, err := workerd.Bench(ctx, m, cfg)
			if err != nil {
				return cli.Exit(err.Error(), 1)
			}
			info := m.Info()
			device, vram := m.Device()
			out := cmd.Root().Writer
			if asJSON {
				return json.NewEncoder(out).Encode(map[string]any{
					"model": model, "desc": info.Desc, "size_bytes": info.SizeBytes, "params": info.Params,
					"backend": bf.backend, "device": device, "vram_bytes": vram, "threads": cfg.Threads, "flash_attn": cfg.FlashAttn,
					"system_info": strings.TrimSpace(llamacpp.SystemInfo()), "results": stats,
				})
			}
			fmt.Fprintf(out, "model: %s (%s, %.1f MiB, %.1f M params), backend %s, threads %d\n",
				model, info.Desc, float64(info.SizeBytes)/(1<<20), float64(info.Params)/1e6, bf.backend, cfg.Threads)
			if device != "" {
				fmt.Fprintf(out, "device: %s, %.1f GiB, %s GPU layers\n", device, float64(vram)/(1<<30), bf.gpuLayers)
			}
			fmt.Fprintf(out, "system: %s\n", strings.TrimSpace(llamacpp.SystemInfo()))
			for _, s := range stats {
				fmt.Fprintln(out, s)
			}
			return nil
		},
	}
}
