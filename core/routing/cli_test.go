package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/replay.golden")

// Scripts as files: the embedded ones from their source directory.
var scriptFiles = []string{
	"../../embed/routing/default.tengo",
	"../../embed/routing/examples/reject_big_batch.tengo",
	"../../embed/routing/examples/pin_model_to_pool.tengo",
	"../../embed/routing/examples/prefer_cheapest_gpu.tengo",
}

// slow is the budget for CLI tests: replay output must not depend on how
// loaded the test machine is.
var slow = Config{Timeout: 10 * time.Second}

func TestRunCheck(t *testing.T) {
	for _, path := range scriptFiles {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var out bytes.Buffer
			if err := RunCheck(&out, path, slow); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if want := 2 + 2*len(SampleSnapshot().Tasks); len(lines) != want {
				t.Errorf("%d lines, want %d:\n%s", len(lines), want, out.String())
			}
		})
	}
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	err := RunCheck(&out, write("bad.tengo", "decision = {\n  action: admit}"), slow)
	if !errors.Is(err, ErrCompile) || !strings.HasSuffix(err.Error(), "bad.tengo:2:11: unresolved reference 'admit'") {
		t.Errorf("compile error: %v", err)
	}
	out.Reset()
	err = RunCheck(&out, write("invalid.tengo", `if stage == "place" { decision = {action: "dispatch", worker: "w-none"} }`), slow)
	if !errors.Is(err, ErrFallback) || !strings.Contains(out.String(), `t-chat place invalid: built-in decides: invalid decision: worker "w-none" is not a candidate [w1 w2 w3]`) {
		t.Errorf("invalid decision: %v\n%s", err, out.String())
	}
	out.Reset()
	err = RunCheck(&out, write("slow.tengo", `for {}`), Config{Timeout: 5 * time.Millisecond})
	if !errors.Is(err, ErrFallback) || !strings.Contains(out.String(), "t-chat admit timeout: built-in decides: timeout after 5ms") {
		t.Errorf("timeout: %v\n%s", err, out.String())
	}
	if err := RunCheck(&out, filepath.Join(dir, "missing.tengo"), slow); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestCheckAndReplay: a script given as source is checked against the
// sample and replayed over a snapshot in memory, as RunCheck and RunReplay
// print them; a compile error comes back with its position and no output.
func TestCheckAndReplay(t *testing.T) {
	src, err := os.ReadFile(scriptFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	snap := SampleSnapshot()
	snap.Tasks = snap.Tasks[:2]
	check, replay, err := CheckAndReplay("api.tengo", src, snap, slow)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, check, replay)
	}
	var want bytes.Buffer
	if err := CheckSource(&want, "api.tengo", src, slow); err != nil {
		t.Fatal(err)
	}
	if check != want.String() {
		t.Errorf("check output differs from CheckSource's:\n%s", testkit.LineDiff(check, want.String()))
	}
	if lines := strings.Split(strings.TrimSpace(replay), "\n"); len(lines) != 2+2*len(snap.Tasks) ||
		!strings.HasPrefix(lines[0], "replay api.tengo over a snapshot taken now: 2 tasks, 5 workers") {
		t.Errorf("replay output:\n%s", replay)
	}

	check, replay, err = CheckAndReplay("api.tengo", []byte("decision = {\n  action: admit}"), snap, slow)
	if !errors.Is(err, ErrCompile) || !strings.HasSuffix(err.Error(), "api.tengo:2:11: unresolved reference 'admit'") || check != "" || replay != "" {
		t.Errorf("compile error: %v (check %q, replay %q)", err, check, replay)
	}
	_, replay, err = CheckAndReplay("slow.tengo", []byte(`for {}`), snap, Config{Timeout: 5 * time.Millisecond})
	if !errors.Is(err, ErrFallback) || !strings.HasPrefix(err.Error(), "check: ") || !strings.Contains(replay, "t-chat admit timeout") {
		t.Errorf("timeout: %v\n%s", err, replay)
	}
}

// TestRunReplayGolden replays testdata/snapshot.json through the default
// script, every example and a script whose decisions are all refused.
// go test -run ReplayGolden -update rewrites the golden file.
func TestRunReplayGolden(t *testing.T) {
	var out bytes.Buffer
	for _, path := range append(scriptFiles, "testdata/fallbacks.tengo") {
		err := RunReplay(&out, path, "testdata/snapshot.json", slow)
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		out.WriteString("\n")
	}
	got := out.String()
	const golden = "testdata/replay.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run ReplayGolden -update)", err)
	}
	if d := testkit.LineDiff(got, string(want)); d != "" {
		t.Errorf("%s differs (-got +want):\n%s", golden, d)
	}
}

func TestRunReplayErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"tasks": [`), 0o644)
	var out bytes.Buffer
	if err := RunReplay(&out, scriptFiles[0], bad, slow); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("bad snapshot: %v", err)
	}
	if err := RunReplay(&out, scriptFiles[0], filepath.Join(dir, "none.json"), slow); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing snapshot: %v", err)
	}
}

// TestSnapshotJSON: the wire form uses snake_case and reads back equal.
func TestSnapshotJSON(t *testing.T) {
	snap := SampleSnapshot()
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"max_tokens"`, `"prompt_tokens"`, `"session_id"`, `"slots_free"`,
		`"slots_total"`, `"tokens_per_second"`, `"cached_prefix"`, `"candidates"`, `"now"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("no %s in %s", key, b)
		}
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, snap) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, snap)
	}
}
