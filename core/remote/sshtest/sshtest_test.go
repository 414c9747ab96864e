package sshtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Without sshd, Start fails the test under CI=1 (what .ci/run sets) and
// skips it elsewhere. The test runs itself as a child to watch the verdict.
func TestMissingSSHD(t *testing.T) {
	if os.Getenv("SSHTEST_CHILD") == "1" {
		Start(t)
		t.Error("Start returned without an sshd")
		return
	}
	for _, tc := range []struct {
		name, ci, want string
	}{
		{"CI", "1", "--- FAIL: TestMissingSSHD"},
		{"local", "", "--- SKIP: TestMissingSSHD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMissingSSHD$", "-test.v")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "CI=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "SSHTEST_CHILD=1", "LLORCH_TEST_SSHD=/nonexistent/sshd", "CI="+tc.ci)
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "/nonexistent/sshd not installed") {
				t.Errorf("CI=%q: %v, output lacks %q:\n%s", tc.ci, err, tc.want, out)
			}
			if (tc.ci != "") != (err != nil) {
				t.Errorf("CI=%q: exit %v", tc.ci, err)
			}
		})
	}
}

// With sshd, Start serves SSH on loopback (skipped where sshd is missing).
func TestStart(t *testing.T) {
	s := Start(t)
	if !banner(s.Addr()) {
		t.Fatalf("no SSH banner on %s", s.Addr())
	}
}
