// Package openaitest runs the black-box check of the OpenAI-compatible API
// with the official openai npm package (tests/openai-sdk/check.mjs) against a
// running llorch daemon, from a Go test:
//
//	sdk := openaitest.NeedSDK(t) // skips when node or the SDK is missing (fails under CI)
//	... start a worker or the orchestrator ...
//	sdk.RunScript(t, "check.mjs", "http://127.0.0.1:8001", token, "tiny")
package openaitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// SDK is the check, ready to run.
type SDK struct {
	node string
	dir  string
}

// NeedSDK finds node and the installed SDK (`npm ci --prefix tests/openai-sdk`).
// When either is missing it skips the test, or fails it when the environment
// variable CI is set: CI installs them.
func NeedSDK(t testing.TB) *SDK {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (CI would fail here)", args...)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "tests", "openai-sdk")
	node, err := exec.LookPath("node")
	if err != nil {
		missing("openaitest: node is not installed")
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		missing("openaitest: the openai SDK is not installed: npm ci --prefix tests/openai-sdk")
		return nil
	}
	return &SDK{node: node, dir: dir}
}

// RunScript runs a script of tests/openai-sdk (check.mjs, features.mjs,
// embeddings.mjs) against the daemon at baseURL (with or without /v1) and
// fails the test when a check fails. apiKey may be empty for a daemon
// without auth.
func (s *SDK) RunScript(t testing.TB, script, baseURL, apiKey, model string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.node, script)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "BASE_URL="+baseURL, "API_KEY="+apiKey, "MODEL="+model)
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err != nil {
		t.Fatalf("openai SDK check %s failed: %v", script, err)
	}
}

// moduleRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("openaitest: no go.mod above the working directory")
		}
		dir = parent
	}
}
