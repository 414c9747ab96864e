package pool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/detect"
	"github.com/llorch/llorch/core/store"
)

// vramRefreshTimeout bounds the nvidia-smi run that refreshes free VRAM in
// status; on failure the recorded figures stand.
const vramRefreshTimeout = 2 * time.Second

func statusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "backends, models and workers in one view (--json: the pool's inventory, memory read now)",
		Action: func(ctx context.Context, _ *cli.Command) error {
			rep, err := e.backends(ctx)
			if err != nil {
				return exit1(err)
			}
			var ms []store.Model
			if err := e.withPool(func(db *store.Pool) (err error) { ms, err = db.Models(); return err }); err != nil {
				return exit1(err)
			}
			rows, err := e.workerRows(ctx)
			if err != nil {
				return exit1(err)
			}
			if e.asJSON {
				return e.print(e.poolStatus(ctx, rep, ms, rows), nil)
			}
			fmt.Fprintf(e.out, "pool %s\n\n", e.dir)
			if err := e.printBackends(rep); err != nil {
				return err
			}
			fmt.Fprintln(e.out)
			err = e.print(nil, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "MODEL\tARCH\tTYPE\tSIZE")
				for _, m := range ms {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.ID, m.Arch, m.FileType, api.SizeText(m.SizeBytes))
				}
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out)
			return e.printWorkers(rows)
		},
	}
}

// poolStatus is the inventory the orchestrator reads: the recorded backends
// (no new detection) with RAM, and free VRAM when cuda has devices, read now.
func (e *env) poolStatus(ctx context.Context, rep detect.Report, ms []store.Model, rows []workerRow) api.PoolStatus {
	host, _ := os.Hostname()
	st := api.PoolStatus{PoolDir: e.dir, Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: buildinfo.Version,
		Backends: []api.PoolBackend{}, Models: []api.PoolModel{}, Workers: []api.PoolWorker{}}
	st.RAMTotalBytes, st.RAMFreeBytes = detect.Memory()
	if b, ok := rep.Backend(detect.BackendCPU); ok && b.CPU != nil && st.RAMTotalBytes == 0 {
		st.RAMTotalBytes, st.RAMFreeBytes = b.CPU.MemTotalBytes, b.CPU.MemAvailBytes
	}
	for _, b := range rep.Backends {
		pb := api.PoolBackend{Name: b.Name, Available: b.Available, Reason: b.Reason}
		devs := b.Devices
		if b.Name == detect.BackendCUDA && len(devs) > 0 {
			if fresh, err := detect.CUDADevices(ctx, detect.Options{NvidiaSMI: os.Getenv("LLORCH_NVIDIA_SMI"), Timeout: vramRefreshTimeout}); err == nil && len(fresh) > 0 {
				devs = fresh
			}
		}
		for _, d := range devs {
			pb.Devices = append(pb.Devices, api.PoolDevice{Index: d.Index, Name: d.Name, VRAMTotalBytes: d.MemTotalBytes, VRAMFreeBytes: d.MemFreeBytes})
		}
		st.Backends = append(st.Backends, pb)
	}
	for _, m := range ms {
		st.Models = append(st.Models, poolModel(m))
	}
	for _, r := range rows {
		st.Workers = append(st.Workers, r.poolWorker())
	}
	return st
}

func poolModel(m store.Model) api.PoolModel {
	return api.PoolModel{ID: m.ID, Ref: m.Ref, Path: m.Path, SHA256: m.SHA256, SizeBytes: m.SizeBytes}
}

func (r workerRow) poolWorker() api.PoolWorker {
	return api.PoolWorker{ID: r.ID, PID: r.PID, URL: r.URL, Model: r.Model, Backend: r.Backend, Slots: r.Slots,
		Alive: r.Alive, Status: r.Status, SlotsBusy: r.SlotsBusy, SlotsTotal: r.SlotsTotal, RSSBytes: r.RSSBytes, LogPath: r.LogPath}
}

// procRSS is the resident memory of process pid (VmRSS in
// /proc/PID/status); 0 where it cannot be read.
func procRSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > 1<<53 {
			return 0
		}
		return kb << 10
	}
	return 0
}
