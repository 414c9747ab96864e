package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/catalog"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/synth"
)

func modelsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "models",
		Usage: "the model catalog: download, synth, list, info, rm, verify",
		Commands: []*cli.Command{
			downloadCommand(e),
			synthCommand(e),
			{
				Name:  "list",
				Usage: "list the catalog",
				Action: func(_ context.Context, _ *cli.Command) error {
					return exit1(e.withPool(func(db *store.Pool) error {
						ms, err := db.Models()
						if err != nil {
							return err
						}
						if ms == nil {
							ms = []store.Model{}
						}
						return e.print(ms, func(w *tabwriter.Writer) {
							fmt.Fprintln(w, "ID\tALIASES\tARCH\tTYPE\tSIZE\tVERIFIED\tREF")
							for _, m := range ms {
								fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", m.ID, strings.Join(m.Aliases, ","), m.Arch, m.FileType,
									human(m.SizeBytes), m.Verified, m.Ref)
							}
						})
					}))
				},
			},
			{
				Name:      "info",
				Usage:     "show a model's GGUF metadata and memory estimate",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{&cli.IntFlag{Name: "ctx", Value: 4096, Usage: "context size for the memory estimate"}},
				Action: func(_ context.Context, cmd *cli.Command) error {
					m, err := e.argModel(cmd)
					if err != nil {
						return err
					}
					info, err := catalog.Inspect(m.Path, int(cmd.Int("ctx")))
					if err != nil {
						return exit1(err)
					}
					return e.print(map[string]any{"model": m, "gguf": info}, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "id\t%s\npath\t%s\nref\t%s\nsha256\t%s (verified against the hub: %v)\n", m.ID, m.Path, m.Ref, m.SHA256, m.Verified)
						fmt.Fprintf(w, "arch\t%s\nparams\t%d\nfile type\t%s\ncontext length\t%d\nchat template\t%v\nsize\t%s\n",
							info.Arch, info.Params, info.FileType, info.ContextLength, info.ChatTemplate, human(info.SizeBytes))
						fmt.Fprintf(w, "estimated RAM (ctx %d)\t%s\nestimated VRAM (ctx %d)\t%s\n", info.Ctx, human(int64(info.EstRAMBytes)), info.Ctx, human(int64(info.EstVRAMBytes)))
					})
				},
			},
			{
				Name:      "rm",
				Usage:     "remove a model from the catalog (and its file, unless registered in place)",
				ArgsUsage: "ID",
				Action: func(_ context.Context, cmd *cli.Command) error {
					id, err := oneArg(cmd, "model id")
					if err != nil {
						return err
					}
					var m store.Model
					if err := e.withPool(func(db *store.Pool) (err error) { m, err = db.DeleteModel(id); return err }); err != nil {
						return exit1(notInCatalog(id, err))
					}
					if !m.InPlace {
						if err := os.Remove(m.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
							return exit1(err)
						}
					}
					fmt.Fprintf(e.errOut, "removed %s\n", m.ID)
					return nil
				},
			},
			{
				Name:      "verify",
				Usage:     "re-hash a model file and compare with the catalog",
				ArgsUsage: "ID",
				Action: func(ctx context.Context, cmd *cli.Command) error {
					m, err := e.argModel(cmd)
					if err != nil {
						return err
					}
					if err := catalog.Verify(ctx, m.Path, m.SHA256); err != nil {
						return exit1(fmt.Errorf("pool: %s: %w", m.ID, err))
					}
					fmt.Fprintf(e.out, "%s: ok (sha256 %s)\n", m.ID, m.SHA256)
					return nil
				},
			},
		},
	}
}

func downloadCommand(e *env) *cli.Command {
	var alias, id string
	return &cli.Command{
		Name:      "download",
		Usage:     "download a GGUF model (hf:ORG/REPO/PATH.gguf[@REV], https://…, file:/abs/path.gguf)",
		ArgsUsage: "REF",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "alias", Usage: "another name for the model", Destination: &alias},
			&cli.StringFlag{Name: "id", Usage: "model id (default: the file name without .gguf)", Destination: &id},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			raw, err := oneArg(cmd, "model reference")
			if err != nil {
				return err
			}
			ref, err := catalog.ParseRef(raw)
			if err != nil {
				return exit1(err)
			}
			if id == "" {
				id = ref.DefaultID()
			}
			for _, name := range []string{id, alias} {
				if name == "" {
					continue
				}
				if err := catalog.ValidID(name); err != nil {
					return exit1(err)
				}
			}
			m := store.Model{ID: id, Ref: ref.String(), AddedAt: time.Now().UTC()}
			if alias != "" {
				m.Aliases = []string{alias}
			}
			// file: refs are checked (GGUF magic, sha256) and registered in place.
			dest := filepath.Join(e.modelsDir(), id+".gguf")
			unlock, err := lockModel(ctx, dest, nil)
			if err != nil {
				return exit1(err)
			}
			defer unlock()
			d := &catalog.Downloader{Endpoint: os.Getenv("HF_ENDPOINT"), Token: os.Getenv("HF_TOKEN"), Progress: e.errOut}
			res, err := d.Download(ctx, ref, dest)
			if err != nil {
				return exit1(err)
			}
			m.Path, m.SHA256, m.SizeBytes, m.Verified = res.Path, res.SHA256, res.Size, res.Verified
			m.InPlace = ref.Kind == catalog.KindFile
			if !res.Verified && !m.InPlace {
				fmt.Fprintf(e.errOut, "warning: the source gave no sha256 for %s; recorded the computed one\n", raw)
			}
			return exit1(e.register(m))
		},
	}
}

// argModel finds the catalog entry named by the command's one argument.
func (e *env) argModel(cmd *cli.Command) (store.Model, error) {
	id, err := oneArg(cmd, "model id")
	if err != nil {
		return store.Model{}, err
	}
	var m store.Model
	if err := e.withPool(func(db *store.Pool) (err error) { m, err = db.Model(id); return err }); err != nil {
		return m, exit1(notInCatalog(id, err))
	}
	return m, nil
}

// register reads the GGUF header into m and records it.
func (e *env) register(m store.Model) error {
	info, err := catalog.Inspect(m.Path, 4096)
	if err != nil {
		return err
	}
	m.Arch, m.Params, m.FileType, m.ContextLen, m.ChatTemplate = info.Arch, info.Params, info.FileType, info.ContextLength, info.ChatTemplate
	if err := e.withPool(func(db *store.Pool) error { return db.PutModel(m) }); err != nil {
		return err
	}
	if e.asJSON {
		return e.print(m, nil)
	}
	fmt.Fprintf(e.out, "%s\t%s\t%s\tsha256:%s\n", m.ID, m.Path, human(m.SizeBytes), m.SHA256)
	return nil
}

func synthCommand(e *env) *cli.Command {
	var preset, typ string
	return &cli.Command{
		Name:      "synth",
		Usage:     "register a synthetic model (random weights, real tokenizer) for offline demos and tests",
		ArgsUsage: "NAME",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "preset", Value: "tiny", Usage: strings.Join(synth.PresetNames(), ", "), Destination: &preset},
			&cli.StringFlag{Name: "type", Value: "f16", Usage: strings.Join(synth.Types(), ", "), Destination: &typ},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			name, err := oneArg(cmd, "model name")
			if err != nil {
				return err
			}
			if err := catalog.ValidID(name); err != nil {
				return exit1(err)
			}
			p, err := synth.PresetByName(preset)
			if err != nil {
				return exit1(err)
			}
			path := filepath.Join(e.modelsDir(), name+".gguf")
			// One writer per model file: a second synth of the same name
			// waits and then writes it again (the result is the same file);
			// a download of that name is refused meanwhile.
			unlock, err := lockModel(ctx, path, e.errOut)
			if err != nil {
				return exit1(err)
			}
			defer unlock()
			quantize := func(in, out, typ string) error { return llamacpp.Quantize(in, out, typ, runtime.NumCPU()) }
			if err := synth.WriteType(path, p, typ, quantize); err != nil {
				return exit1(err)
			}
			sum, size, err := catalog.SHA256File(ctx, path)
			if err != nil {
				return exit1(err)
			}
			return exit1(e.register(store.Model{ID: name, Ref: "synth:" + preset + "/" + strings.ToLower(typ), Path: path,
				SHA256: sum, SizeBytes: size, Verified: true, AddedAt: time.Now().UTC()}))
		},
	}
}

// lockModel takes the exclusive lock of the model file at path
// (path.lock), held by one download or synth at a time; it goes with the
// process. With waitMsg nil it fails at once when another holds it; otherwise
// it says so on waitMsg and waits until the lock is free or ctx ends.
func lockModel(ctx context.Context, path string, waitMsg io.Writer) (unlock func(), err error) {
	name := strings.TrimSuffix(filepath.Base(path), ".gguf")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	lockPath := path + ".lock"
	said := false
	for {
		f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// The holder before us removes the file as it lets go; a lock on
			// an unlinked file locks nothing another process can see.
			if same, err := sameFile(f, lockPath); err != nil || !same {
				f.Close()
				if err != nil {
					return nil, err
				}
				continue
			}
			return func() { os.Remove(lockPath); f.Close() }, nil
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("pool: lock %s: %w", lockPath, err)
		}
		if waitMsg == nil {
			return nil, fmt.Errorf("pool: another download or synth of %s is running", name)
		}
		if !said {
			fmt.Fprintf(waitMsg, "pool: waiting for another download or synth of %s\n", name)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pool: waiting for the lock of %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sameFile reports whether the open f is still the file at path.
func sameFile(f *os.File, path string) (bool, error) {
	held, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, now), nil
}

func oneArg(cmd *cli.Command, what string) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", cli.Exit(fmt.Sprintf("pool: want one %s, got %d arguments (see --help)", what, cmd.Args().Len()), 2)
	}
	return cmd.Args().First(), nil
}

func notInCatalog(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("pool: model %q is not in the catalog (add it with: llorch pool models download REF --id %s)", id, id)
	}
	return err
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
