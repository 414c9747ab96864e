package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	binPath  string
	tinyPath string
)

func TestMain(m *testing.M) {
	testkit.Main(m, func(k *testkit.Kit) {
		binPath, tinyPath = k.Bin, k.Tiny
	})
}

type proc struct {
	cmd    *exec.Cmd
	url    string
	client *workerclient.Client
	stderr *strings.Builder
	done   chan error
}

// startProc runs `llorch worker` as a child process and waits for ready.
func startProc(t *testing.T, extra ...string) *proc {
	t.Helper()
	port := testkit.FreePort(t)
	args := append([]string{"worker", "--model", tinyPath, "--port", fmt.Sprint(port), "--slots", "1", "--threads", "1", "--drain-grace", "2m"}, extra...)
	cmd := exec.Command(binPath, args...)
	p := &proc{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	p.client = workerclient.New(p.url, "", nil)
	for range 1000 {
		if h, err := p.client.Health(context.Background()); err == nil && h.Status == api.StatusReady {
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("worker exited: %v\n%s", err, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("worker not ready:\n%s", p.stderr)
	return nil
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
		out, _ := json.Marshal(res.Tokens)
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
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
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
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stderr)
		}
		p.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit after drain")
	}
	if !strings.Contains(p.stderr.String(), "draining") {
		t.Errorf("no drain in log:\n%s", p.stderr)
	}
}

func TestStartupErrors(t *testing.T) {
	notGGUF := filepath.Join(t.TempDir(), "x.gguf")
	os.WriteFile(notGGUF, []byte("hello"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", []string{"worker", "--backend", "metal", "--model", tinyPath}, `backend "metal" is not available in this build (backends: cpu, cuda)`},
		{"missing model", []string{"worker", "--model", "/nonexistent/m.gguf"}, "cannot read model"},
		{"not gguf", []string{"worker", "--model", notGGUF}, "is not a GGUF file"},
		{"bad slots", []string{"worker", "--model", tinyPath, "--slots", "300", "--port", "0"}, "slots must be"},
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
	if !found {
		t.Error("llorch_worker_slots_total 1 missing")
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}
