package pool

import (
	"context"
	"encoding/json"
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
	"github.com/llorch/llorch/core/api"
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
			estimateCommand(e),
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
									api.SizeText(m.SizeBytes), m.Verified, m.Ref)
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
							info.Arch, info.Params, info.FileType, info.ContextLength, info.ChatTemplate, api.SizeText(info.SizeBytes))
						fmt.Fprintf(w, "estimated RAM (ctx %d)\t%s\nestimated VRAM (ctx %d)\t%s\n", info.Ctx, api.SizeText(int64(info.EstRAMBytes)), info.Ctx, api.SizeText(int64(info.EstVRAMBytes)))
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
	var alias, id, wantSHA string
	return &cli.Command{
		Name:      "download",
		Usage:     "download a GGUF model (hf:ORG/REPO/PATH.gguf[@REV], https://…, file:/abs/path.gguf)",
		ArgsUsage: "REF",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "alias", Usage: "another name for the model", Destination: &alias},
			&cli.StringFlag{Name: "id", Usage: "model id (default: the file name without .gguf)", Destination: &id},
			&cli.StringFlag{Name: "sha256", Usage: "expected sha256 of the file (64 hex digits); a mismatch fails and keeps nothing", Destination: &wantSHA},
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
			wantSHA = strings.ToLower(wantSHA)
			if wantSHA != "" && (len(wantSHA) != 64 || strings.Trim(wantSHA, "0123456789abcdef") != "") {
				return cli.Exit("pool: --sha256 must be 64 hex digits", 2)
			}
			return exit1(e.download(ctx, ref, id, alias, wantSHA))
		},
	}
}

// download fetches ref into the catalog as id. A catalog entry of that id
// with the same ref (and sha256, when one is expected) and its file in place
// is done at once. With --json, stdout gets NDJSON: progress lines, at most
// four a second, then one done line with the model.
func (e *env) download(ctx context.Context, ref catalog.Ref, id, alias, wantSHA string) error {
	var have store.Model
	err := e.withPool(func(db *store.Pool) (err error) { have, err = db.Model(id); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && have.ID == id && have.Ref == ref.String() && (wantSHA == "" || wantSHA == have.SHA256) {
		if st, serr := os.Stat(have.Path); serr == nil && st.Size() == have.SizeBytes {
			return e.printDownloaded(have)
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
		return err
	}
	defer unlock()
	d := &catalog.Downloader{Endpoint: os.Getenv("HF_ENDPOINT"), Token: os.Getenv("HF_TOKEN"), Progress: e.errOut}
	if e.asJSON {
		d.OnProgress = progressLines(e.out)
	}
	res, err := d.Download(ctx, ref, dest)
	if err != nil {
		return err
	}
	m.Path, m.SHA256, m.SizeBytes, m.Verified = res.Path, res.SHA256, res.Size, res.Verified
	m.InPlace = ref.Kind == catalog.KindFile
	if wantSHA != "" && res.SHA256 != wantSHA {
		if !m.InPlace {
			if err := os.Remove(res.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(e.errOut, "pool: removing %s: %v\n", res.Path, err)
			}
			// An older entry of this id pointed at the file just removed.
			if have.ID == id && have.Path == res.Path {
				if err := e.withPool(func(db *store.Pool) error { _, err := db.DeleteModel(id); return err }); err != nil {
					fmt.Fprintf(e.errOut, "pool: forgetting %s: %v\n", id, err)
				}
			}
		}
		return fmt.Errorf("pool: %s: %w: expected sha256 %s, got %s; nothing was added to the catalog", ref, catalog.ErrChecksumMismatch, wantSHA, res.SHA256)
	}
	if !res.Verified && !m.InPlace && wantSHA == "" {
		fmt.Fprintf(e.errOut, "warning: the source gave no sha256 for %s; recorded the computed one\n", ref)
	}
	m, err = e.register(m)
	if err != nil {
		return err
	}
	return e.printDownloaded(m)
}

// progressEvery is the least time between two NDJSON progress lines.
const progressEvery = 250 * time.Millisecond

// downloadEvent is one NDJSON line of `models download --json`.
type downloadEvent struct {
	Event string         `json:"event"` // progress or done
	Bytes int64          `json:"bytes,omitempty"`
	Total int64          `json:"total,omitempty"`
	Model *api.PoolModel `json:"model,omitempty"`
}

// progressLines writes {"event":"progress","bytes":N,"total":N} lines to w,
// at most one per progressEvery, and always the line that reaches the total.
func progressLines(w io.Writer) func(done, total int64) {
	var last time.Time
	enc := json.NewEncoder(w)
	return func(done, total int64) {
		now := time.Now()
		if now.Sub(last) < progressEvery && (total <= 0 || done < total) {
			return
		}
		last = now
		// Written field by field: total 0 (unknown) must still appear.
		_ = enc.Encode(struct {
			Event string `json:"event"`
			Bytes int64  `json:"bytes"`
			Total int64  `json:"total"`
		}{"progress", done, max(total, 0)})
	}
}

// printDownloaded prints a model the catalog holds: the NDJSON done line
// with --json, else ID PATH SIZE sha256.
func (e *env) printDownloaded(m store.Model) error {
	if e.asJSON {
		pm := poolModel(m)
		return json.NewEncoder(e.out).Encode(downloadEvent{Event: "done", Model: &pm})
	}
	fmt.Fprintf(e.out, "%s\t%s\t%s\tsha256:%s\n", m.ID, m.Path, api.SizeText(m.SizeBytes), m.SHA256)
	return nil
}

func estimateCommand(e *env) *cli.Command {
	var ctxSize, slots int
	return &cli.Command{
		Name:      "estimate",
		Usage:     "estimate a model's memory for ctx tokens per slot × slots, from its GGUF header (a catalog id, file:, hf: or https:, read with range requests)",
		ArgsUsage: "SOURCE|ID",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "ctx", Value: 4096, Usage: "context per slot (0: the model's trained context)", Destination: &ctxSize},
			&cli.IntFlag{Name: "slots", Value: 4, Usage: "parallel sequences; the KV cache holds ctx × slots tokens", Destination: &slots},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			src, err := oneArg(cmd, "model source or id")
			if err != nil {
				return err
			}
			if ctxSize < 0 || ctxSize > api.MaxCtxLimit {
				return cli.Exit(fmt.Sprintf("pool: --ctx must be 0..%d", api.MaxCtxLimit), 2)
			}
			if slots < 1 || slots > api.MaxSlotsLimit {
				return cli.Exit(fmt.Sprintf("pool: --slots must be 1..%d", api.MaxSlotsLimit), 2)
			}
			est, err := e.estimate(ctx, src, ctxSize, slots)
			if err != nil {
				return exit1(err)
			}
			return e.print(est, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "weights\t%s\nKV cache (%d × %d tokens)\t%s\noverhead\t%s\ntotal (CPU RAM)\t%s\nVRAM (all layers on one GPU)\t%s\nmethod\t%s\nfile size\t%s\n",
					api.SizeText(int64(est.WeightsBytes)), ctxSize, slots, api.SizeText(int64(est.KVBytes)), api.SizeText(int64(est.OverheadBytes)),
					api.SizeText(int64(est.TotalBytes)), api.SizeText(int64(est.VRAMBytes)), est.Method, api.SizeText(est.SizeBytes))
			})
		},
	}
}

// estimate reads the header of src: a catalog id or alias, else a
// reference (file: read in place; hf: and https: by one range request of the
// file's first bytes).
func (e *env) estimate(ctx context.Context, src string, ctxSize, slots int) (catalog.Estimate, error) {
	var m store.Model
	err := e.withPool(func(db *store.Pool) (err error) { m, err = db.Model(src); return err })
	switch {
	case err == nil:
		return catalog.EstimateFile(m.Path, ctxSize, slots)
	case !errors.Is(err, store.ErrNotFound):
		return catalog.Estimate{}, err
	}
	ref, err := catalog.ParseRef(src)
	if err != nil {
		return catalog.Estimate{}, fmt.Errorf("pool: %q is not in the catalog and not a model reference: %w", src, err)
	}
	if ref.Kind == catalog.KindFile {
		return catalog.EstimateFile(ref.File, ctxSize, slots)
	}
	d := &catalog.Downloader{Endpoint: os.Getenv("HF_ENDPOINT"), Token: os.Getenv("HF_TOKEN")}
	return d.EstimateRemote(ctx, ref, "", ctxSize, slots)
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
func (e *env) register(m store.Model) (store.Model, error) {
	info, err := catalog.Inspect(m.Path, 4096)
	if err != nil {
		return m, err
	}
	m.Arch, m.Params, m.FileType, m.ContextLen, m.ChatTemplate = info.Arch, info.Params, info.FileType, info.ContextLength, info.ChatTemplate
	return m, e.withPool(func(db *store.Pool) error { return db.PutModel(m) })
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
			m, err := e.register(store.Model{ID: name, Ref: "synth:" + preset + "/" + strings.ToLower(typ), Path: path,
				SHA256: sum, SizeBytes: size, Verified: true, AddedAt: time.Now().UTC()})
			if err != nil {
				return exit1(err)
			}
			if e.asJSON {
				return e.print(m, nil)
			}
			return e.printDownloaded(m)
		},
	}
}

// lockModel takes the exclusive lock of the model file at path
// (path.lock), held by one download or synth at a time; it goes with the
// process. With waitMsg nil it fails at once when another holds it; otherwise
// it says so on waitMsg and waits until the lock is free or ctx ends.
func lockModel(ctx context.Context, path string, waitMsg io.Writer) (unlock func(), err error) {
	name := strings.TrimSuffix(filepath.Base(path), ".gguf")
	return lockFile(ctx, path+".lock", "download or synth of "+name, waitMsg)
}

// lockFile takes the exclusive lock file at lockPath for what (a phrase
// such as "download or synth of NAME"), as lockModel says.
func lockFile(ctx context.Context, lockPath, what string, waitMsg io.Writer) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return nil, err
	}
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
			return nil, fmt.Errorf("pool: another %s is running", what)
		}
		if !said {
			fmt.Fprintf(waitMsg, "pool: waiting for another %s\n", what)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pool: waiting for another %s: %w", what, ctx.Err())
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
