package ctl

import (
	"bytes"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/llorch/llorch/core/api"
)

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"yes\n": true, "y\n": true, " YES \n": true, "yes": true, "no\n": false, "\n": false, "": false, "yess\n": false} {
		var out bytes.Buffer
		got, err := confirm(strings.NewReader(in), &out)
		if err != nil || got != want || !strings.Contains(out.String(), "type yes") {
			t.Errorf("confirm(%q) = %v, %v (prompt %q)", in, got, err, out.String())
		}
	}
}

func TestFleetStatusTables(t *testing.T) {
	st := fleetStatus{
		Models: []api.ModelView{{
			ModelSpec: api.ModelSpec{ID: "qwen"}, State: api.ModelFailing,
			Replicas:  api.ReplicaCounts{Desired: 2, Starting: 1, Ready: 1},
			Workers:   []api.ModelReplica{{WorkerID: "w1", Pool: "gpu-a"}, {Pool: "gpu-b"}},
			Fit:       &api.ModelFit{NeedBytes: 3 << 30},
			LastError: "crash loop:\nout of memory",
		}, {
			ModelSpec: api.ModelSpec{ID: "emb", Embedding: true}, State: api.ModelReady,
			Replicas: api.ReplicaCounts{Ready: 1},
			Workers:  []api.ModelReplica{{WorkerID: "e1", Pool: "gpu-a"}},
		}},
		Pools: []api.PoolView{{
			Pool: api.Pool{Name: "gpu-a", Transport: api.TransportSSH, Host: "gpu-a.lan"}, State: api.PoolOK,
			Inventory: &api.PoolStatus{RAMFreeBytes: 1 << 30, RAMTotalBytes: 16 << 30, Workers: []api.PoolWorker{{ID: "w1"}}},
		}, {
			Pool: api.Pool{Name: "gpu-b", Transport: api.TransportSSH, Host: "gpu-b"}, State: api.PoolUnreachable,
			LastError: "host key unknown: SHA256:abc",
		}},
		Events: []api.FleetEvent{{Seq: 1, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.Local), Kind: api.EventSpawn, Pool: "gpu-a", Model: "qwen", Worker: "w1"}},
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	writeFleetStatus(tw, st)
	tw.Flush()
	want := `MODEL  KIND        STATE    READY/STARTING/DESIRED  POOLS/WORKERS     NEED     LAST ERROR
qwen   generation  failing  1/1/2                   gpu-a/w1,gpu-b/-  3.0 GiB  crash loop: out of memory
emb    embedding   ready    1/0/0                   gpu-a/e1          -        -

POOL   TRANSPORT  HOST       STATE        RAM FREE/TOTAL    WORKERS  LAST ERROR
gpu-a  ssh        gpu-a.lan  ok           1.0 GiB/16.0 GiB  1        -
gpu-b  ssh        gpu-b      unreachable  -                 -        host key unknown: SHA256:abc

TIME      EVENT  POOL   MODEL  WORKER  REASON
03:04:05  spawn  gpu-a  qwen   w1      -
`
	if b.String() != want {
		t.Errorf("status:\n-got\n%s+want\n%s", b.String(), want)
	}
}
