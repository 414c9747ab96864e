package ctl_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
	"github.com/llorch/llorch/core/workerclient"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// startWorker runs a real worker process on the tiny model and returns its
// host:port once it is ready.
func startWorker(t *testing.T) string {
	t.Helper()
	w := kit.StartWorker(t, nil, "--model", kit.Tiny, "--slots", "1", "--threads", "1")
	return strings.TrimPrefix(w.URL, "http://")
}

func ctl(args ...string) *exec.Cmd { return exec.Command(kit.Bin, append([]string{"ctl"}, args...)...) }

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestInferStreams(t *testing.T) {
	addr := startWorker(t)
	cmd := ctl("infer", "--worker", addr, "--prompt", "Hello", "--system", "Be brief.", "--max-tokens", "12", "--seed", "4", "--ignore-eos")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("infer: %v\n%s", err, errb.String())
	}
	if s := errb.String(); !strings.Contains(s, "tokens 12,") || !strings.Contains(s, "time to first token") || !strings.Contains(s, "stop MAX_TOKENS") {
		t.Errorf("stats line = %q", s)
	}
	// Same seed, same text: what was streamed is the generation.
	res, err := workerclient.New(addr, "", nil).Collect(context.Background(), &api.ExecuteRequest{
		Messages:  []api.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello"}},
		MaxTokens: ptr(12), Seed: ptr(int64(4)), Temperature: ptr(api.DefaultTemperature), IgnoreEOS: true})
	if err != nil || res.Text()+"\n" != out.String() {
		t.Errorf("stdout %q, direct %q (%v)", out.String(), res.Text(), err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestInferErrors(t *testing.T) {
	// Port 1 (tcpmux) is privileged and unused: nothing answers there.
	out, err := ctl("infer", "--worker", "127.0.0.1:1", "--prompt", "x").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "unreachable") {
		t.Errorf("unreachable: exit %d, %s", exitCode(err), out)
	}
	addr := startWorker(t)
	// Occupy the only slot.
	st, err := workerclient.New(addr, "", nil).Execute(context.Background(), &api.ExecuteRequest{Prompt: "busy", MaxTokens: ptr(4000), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out, err = ctl("infer", "--worker", addr, "--prompt", "x", "--busy-retries", "1").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "busy") {
		t.Errorf("busy: exit %d, %s", exitCode(err), out)
	}
}

// An address that is not a worker's or an orchestrator's URL is refused
// before any request (exit 2), naming it.
func TestBadAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr string
		args []string
	}{
		{"ftp://127.0.0.1:1", []string{"infer", "--prompt", "x", "--worker"}},
		{"http://u:p@127.0.0.1:1", []string{"workers", "--orchestrator"}},
		{"127.0.0.1:1?x=1", []string{"tasks", "--orchestrator"}},
	} {
		out, err := ctl(append(tc.args, tc.addr)...).CombinedOutput()
		if exitCode(err) != 2 || !strings.Contains(string(out), tc.addr) {
			t.Errorf("%s %s: exit %d, %s", tc.args[0], tc.addr, exitCode(err), out)
		}
	}
}

func TestInferCtrlCCancels(t *testing.T) {
	addr := startWorker(t)
	cmd := ctl("infer", "--worker", addr, "--prompt", "go on", "--max-tokens", "4000", "--temperature", "1", "--ignore-eos")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for streamed output, then press Ctrl-C.
	if _, err := bufio.NewReader(stdout).ReadByte(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	if code := exitCode(cmd.Wait()); code != 130 {
		t.Fatalf("exit %d, want 130\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "cancelled job") {
		t.Errorf("stderr = %q", errb.String())
	}
	base, err := api.BaseURL(addr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`llorch_worker_requests_total{outcome="cancelled"} 1`)) {
		t.Errorf("the worker did not see a cancel:\n%s", body)
	}
}
