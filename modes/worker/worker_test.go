package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
	"github.com/llorch/llorch/core/workerclient"
)

var (
	kit      *testkit.Kit
	binPath  string
	tinyPath string
)

func TestMain(m *testing.M) {
	testkit.Main(m, func(k *testkit.Kit) {
		kit, binPath, tinyPath = k, k.Bin, k.Tiny
	})
}

type proc struct {
	*testkit.Worker
	url    string
	client *workerclient.Client
}

// startProc runs `llorch worker` as a child process on a port the OS chooses
// and waits for ready.
func startProc(t *testing.T, extra ...string) *proc {
	t.Helper()
	args := append([]string{"--model", tinyPath, "--slots", "1", "--threads", "1", "--drain-grace", "2m"}, extra...)
	w := kit.StartWorker(t, nil, args...)
	return &proc{Worker: w, url: w.URL, client: workerclient.New(w.URL, "", nil)}
}

func ptr[T any](v T) *T { return &v }

func TestSameSeedAcrossProcesses(t *testing.T) {
	a, b := startProc(t), startProc(t)
	run := func(p *proc) string {
		res, err := p.client.Collect(context.Background(), &api.ExecuteRequest{Prompt: "Across processes",
			MaxTokens: ptr(24), Seed: ptr(int64(99)), Temperature: ptr(0.9)})
		if err != nil || res.End == nil {
			t.Fatalf("collect: %v %v", err, res)
		}
		out, err := json.Marshal(res.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if ra, rb := run(a), run(b); ra != rb {
		t.Errorf("same seed, different processes, different tokens:\n%s\n%s", ra, rb)
	}
}

func TestSIGTERMDrains(t *testing.T) {
	p := startProc(t)
	st, err := p.client.Execute(context.Background(), &api.ExecuteRequest{Prompt: "Drain me", MaxTokens: ptr(400), Seed: ptr(int64(1)), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Token != nil {
			break
		}
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var end *api.End
	for end == nil {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broken by SIGTERM: %v", err)
		}
		if ev.Error != nil {
			t.Fatalf("job failed during drain: %v", ev.Error)
		}
		end = ev.End
	}
	if end.StopReason != api.StopMaxTokens || end.TokensOut != 400 {
		t.Errorf("end = %+v, want the whole job", end)
	}
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Fatalf("exit: %v\n%s", err, p.Log())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit after drain")
	}
	if !strings.Contains(p.Log(), "draining") {
		t.Errorf("no drain in log:\n%s", p.Log())
	}
}

func TestStartupErrors(t *testing.T) {
	notGGUF := filepath.Join(t.TempDir(), "x.gguf")
	if err := os.WriteFile(notGGUF, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "cut.gguf")
	if err := os.WriteFile(truncated, full[:100_000], 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", []string{"worker", "--backend", "metal", "--model", tinyPath}, `backend "metal" is not available in this build (backends: cpu, cuda)`},
		{"missing model", []string{"worker", "--model", "/nonexistent/m.gguf"}, "cannot read model"},
		{"not gguf", []string{"worker", "--model", notGGUF}, "is not a GGUF file"},
		{"truncated", []string{"worker", "--model", truncated, "--port", "0"},
			fmt.Sprintf("worker: catalog: truncated file: %s has 100000 bytes, its GGUF header describes %d", truncated, len(full))},
		{"bad slots", []string{"worker", "--model", tinyPath, "--slots", "300", "--port", "0"}, "slots must be"},
		{"network without token", []string{"worker", "--model", tinyPath, "--host", "0.0.0.0", "--port", "0"},
			"worker: refusing to listen on 0.0.0.0 without --token"},
		{"all interfaces without token", []string{"worker", "--model", tinyPath, "--host", "", "--port", "0"},
			"worker: refusing to listen on all interfaces without --token"},
		{"a LAN address without token", []string{"worker", "--model", tinyPath, "--host", "192.0.2.1", "--port", "0"},
			"--insecure-no-auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binPath, tc.args...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
				t.Errorf("%d lines, want one:\n%s", n+1, out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binPath, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "llorch ") || !strings.Contains(string(out), "backend cpu") {
		t.Fatalf("version: %v %q", err, out)
	}
}

func TestBenchCommand(t *testing.T) {
	out, err := exec.Command(binPath, "worker", "bench", "--model", tinyPath, "--threads", "1", "-p", "32", "-n", "8", "--reps", "2", "--json").Output()
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	var res struct {
		Results []struct {
			Test string  `json:"test"`
			TPS  float64 `json:"tokens_per_second"`
		} `json:"results"`
		SystemInfo string `json:"system_info"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("bench json: %v\n%s", err, out)
	}
	if len(res.Results) != 2 || res.Results[0].Test != "pp32" || res.Results[1].Test != "tg8" || res.Results[0].TPS <= 0 || res.Results[1].TPS <= 0 {
		t.Errorf("bench results = %+v", res.Results)
	}
	if !strings.Contains(res.SystemInfo, "REPACK = 1") {
		t.Errorf("system info lacks REPACK = 1 (build flags not applied?): %s", res.SystemInfo)
	}
}

// TestMetricsEndpoint checks /metrics over a real process.
func TestMetricsEndpoint(t *testing.T) {
	p := startProc(t)
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	found := false
	for sc.Scan() {
		found = found || strings.HasPrefix(sc.Text(), "llorch_worker_slots_total 1")
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	if !found {
		t.Error("llorch_worker_slots_total 1 missing")
	}
}

// A worker on a network address starts with --token or --insecure-no-auth,
// and its address file names a URL this machine can reach.
func TestNetworkHostNeedsTokenOrInsecure(t *testing.T) {
	for name, extra := range map[string][]string{
		"token":    {"--token", "s3cret"},
		"insecure": {"--insecure-no-auth"},
	} {
		t.Run(name, func(t *testing.T) {
			p := startProc(t, append([]string{"--host", "0.0.0.0"}, extra...)...)
			if !strings.HasPrefix(p.url, "http://127.0.0.1:") {
				t.Errorf("address file holds %q, want a loopback URL", p.url)
			}
			if !strings.Contains(p.Log(), "worker listening") {
				t.Errorf("log:\n%s", p.Log())
			}
		})
	}
}

// --port 0 binds a port the OS chooses; the address file, the default worker
// id and the registration all carry that port, not 0.
func TestPortZeroRegistersRealPort(t *testing.T) {
	regs := make(chan api.WorkerRegistration, 8)
	orch := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/workers/register" {
			var reg api.WorkerRegistration
			if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
				t.Errorf("registration body: %v", err)
			}
			select {
			case regs <- reg:
			default:
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer orch.Close()
	p := startProc(t, "--orchestrator", orch.URL, "--heartbeat", "100ms")
	u, err := url.Parse(p.url)
	if err != nil || u.Port() == "" || u.Port() == "0" {
		t.Fatalf("address file URL %q: %v", p.url, err)
	}
	var reg api.WorkerRegistration
	select {
	case reg = <-regs:
	case <-time.After(30 * time.Second):
		t.Fatalf("no registration\n%s", p.Log())
	}
	if reg.URL != p.url {
		t.Errorf("registered URL %q, address file %q", reg.URL, p.url)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if want := "w-" + host + "-" + u.Port(); reg.WorkerID != want {
		t.Errorf("worker id %q, want %q", reg.WorkerID, want)
	}
	h, err := p.client.Health(t.Context())
	if err != nil || h.WorkerID != reg.WorkerID {
		t.Errorf("health: %+v, %v", h, err)
	}
}
