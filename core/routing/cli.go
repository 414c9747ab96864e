package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// ErrFallback is returned by RunCheck and RunReplay when a script call fell
// back to the built-in policy (error, timeout, alloc_cap or invalid).
var ErrFallback = errors.New("routing: script fell back to the built-in policy")

// maxSnapshotBytes bounds the snapshot file RunReplay reads.
const maxSnapshotBytes = 64 << 20

// RunCheck compiles the script at path and runs it against SampleSnapshot,
// printing one line per decision (see RunReplay). It returns the compile
// error, or an error wrapping ErrFallback when any call fell back.
func RunCheck(w io.Writer, path string, cfg Config) error {
	src, err := readLimited(path, MaxSourceBytes)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	return CheckSource(w, path, src, cfg)
}

// CheckSource is RunCheck for a script already read: the built-in default
// script or one read from stdin. name is used in error positions.
func CheckSource(w io.Writer, name string, src []byte, cfg Config) error {
	s, err := Compile(name, src, cfg)
	if err != nil {
		return err
	}
	return checkSample(w, s, name)
}

// checkSample runs s against SampleSnapshot under a header line.
func checkSample(w io.Writer, s *Script, name string) error {
	snap := SampleSnapshot()
	fmt.Fprintf(w, "check %s: compiled; %d sample tasks, %d sample workers\n",
		filepath.Base(name), len(snap.Tasks), len(snap.Candidates))
	_, err := runSnapshot(w, s, snap)
	return err
}

// RunReplay compiles the script at path and runs it over the snapshot at
// snapshotPath (a Snapshot as JSON, what GET /v2/routing/snapshot returns).
// For each task in order it prints the admit decision, then the place
// decision over the snapshot's candidates serving the task's model (at the
// priority the script admitted it with; skipped when rejected):
//
//	t1 admit ok: admit
//	t1 place ok: dispatch w2 [w1 w2]
//	t2 place timeout: built-in decides: timeout after 50ms [w1 w2]
//
// and a summary line. Lines carry no timings, so equal inputs print equal
// output. It returns an error wrapping ErrFallback when any call fell back.
func RunReplay(w io.Writer, path, snapshotPath string, cfg Config) error {
	s, err := compileFile(path, cfg)
	if err != nil {
		return err
	}
	data, err := readLimited(snapshotPath, maxSnapshotBytes)
	if err != nil {
		return fmt.Errorf("routing: replay: %w", err)
	}
	return replay(w, s, filepath.Base(path), snapshotPath, data)
}

// replay runs s over the snapshot data, read from snapshotPath.
func replay(w io.Writer, s *Script, name, snapshotPath string, data []byte) error {
	var snap Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("routing: replay: %s: %w", snapshotPath, err)
	}
	return replaySnapshot(w, s, name, filepath.Base(snapshotPath), snap)
}

// replaySnapshot runs s over snap under a header line naming the script and
// where the snapshot came from.
func replaySnapshot(w io.Writer, s *Script, name, from string, snap Snapshot) error {
	fmt.Fprintf(w, "replay %s over %s: %d tasks, %d workers, now %s\n",
		name, from, len(snap.Tasks), len(snap.Candidates), snap.Now.UTC().Format(time.RFC3339))
	_, err := runSnapshot(w, s, snap)
	return err
}

// CheckAndReplay is `routing check` and `routing replay` for a script
// given as source, as the orchestrator's POST /v2/routing/check runs them:
// it compiles src and runs it against SampleSnapshot (check) and over snap
// (replay), and returns what each printed. err is the compile error (with
// its position; check and replay are then empty), or an error wrapping
// ErrFallback when calls of either run fell back to the built-in policy.
// Nothing is loaded.
func CheckAndReplay(name string, src []byte, snap Snapshot, cfg Config) (check, replay string, err error) {
	s, err := Compile(name, src, cfg)
	if err != nil {
		return "", "", err
	}
	var cw, rw strings.Builder
	cerr := checkSample(&cw, s, name)
	rerr := replaySnapshot(&rw, s, filepath.Base(name), "a snapshot taken now", snap)
	switch {
	case cerr != nil && rerr != nil:
		err = fmt.Errorf("check: %w; replay: %w", cerr, rerr)
	case cerr != nil:
		err = fmt.Errorf("check: %w", cerr)
	case rerr != nil:
		err = fmt.Errorf("replay: %w", rerr)
	}
	return cw.String(), rw.String(), err
}

func compileFile(path string, cfg Config) (*Script, error) {
	src, err := readLimited(path, MaxSourceBytes)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	return Compile(path, src, cfg)
}

// runSnapshot runs the admit and place stages for every task of snap,
// prints the decisions and returns how many calls ended in each outcome.
func runSnapshot(w io.Writer, s *Script, snap Snapshot) (map[Outcome]int, error) {
	ctx := context.Background()
	counts := map[Outcome]int{}
	calls, fallbacks := 0, 0
	count := func(r Result) {
		calls++
		counts[r.Outcome]++
		if r.Outcome.Fallback() {
			fallbacks++
		}
	}
	for _, t := range snap.Tasks {
		ad, r := s.Admit(ctx, AdmitInput{Task: t, Queue: snap.Queue, Now: snap.Now})
		count(r)
		fmt.Fprintf(w, "%s admit %s\n", t.ID, describeResult(r))
		if ad.Action == ActionReject {
			fmt.Fprintf(w, "%s place skipped: rejected at admission\n", t.ID)
			continue
		}
		if ad.Priority != "" {
			t.Priority = ad.Priority
		}
		var cands []Candidate
		for _, c := range snap.Candidates {
			if c.Model == t.Model {
				cands = append(cands, c)
			}
		}
		_, r = s.Place(ctx, PlaceInput{Task: t, Candidates: cands, Now: snap.Now})
		count(r)
		fmt.Fprintf(w, "%s place %s %s\n", t.ID, describeResult(r), candidateList(cands))
	}
	fmt.Fprintf(w, "calls %d:", calls)
	for _, o := range []Outcome{OutcomeOK, OutcomeDefault, OutcomeError, OutcomeTimeout, OutcomeAllocCap, OutcomeInvalid} {
		fmt.Fprintf(w, " %s %d", o, counts[o])
	}
	fmt.Fprintln(w)
	if fallbacks > 0 {
		return counts, fmt.Errorf("%w: %d of %d calls", ErrFallback, fallbacks, calls)
	}
	return counts, nil
}

func describeResult(r Result) string {
	switch {
	case r.Outcome == OutcomeOK:
		return "ok: " + strings.TrimPrefix(r.Note, "script: ")
	case r.Outcome == OutcomeDefault:
		return "default: no decision, built-in decides"
	}
	return string(r.Outcome) + ": built-in decides: " + strings.TrimPrefix(r.Note, "script ignored: ")
}

func candidateList(cs []Candidate) string {
	if len(cs) > 8 {
		return fmt.Sprintf("[%d candidates]", len(cs))
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// SampleSnapshot is the input RunCheck runs a script against: tasks of both
// priorities, one batch task over 1000 tokens, one from a trial tenant, one
// for a model no worker serves, and workers in pools gpu-a, gpu-b and cpu with
// gpu and cost_per_hour labels.
func SampleSnapshot() Snapshot {
	return Snapshot{
		Now: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC),
		Queue: map[string]map[string]int{
			"llama": {"interactive": 2, "batch": 7},
			"qwen":  {"interactive": 0, "batch": 1},
		},
		Tasks: []Task{
			{ID: "t-chat", Model: "llama", Priority: "interactive", MaxTokens: 256, PromptTokens: 120,
				SessionID: "s-1", Key: "key-3f9a", Labels: map[string]string{"team": "search"},
				Headers: map[string]string{"x-tenant-plan": "pro"}},
			{ID: "t-batch-big", Model: "llama", Priority: "batch", MaxTokens: 2000, PromptTokens: 800,
				Key: "key-3f9a", Labels: map[string]string{"team": "etl"}},
			{ID: "t-batch-trial", Model: "llama", Priority: "batch", MaxTokens: 200, PromptTokens: 50,
				Key: "key-77c1", Headers: map[string]string{"x-tenant-plan": "trial"}},
			{ID: "t-qwen", Model: "qwen", Priority: "interactive", MaxTokens: 512, PromptTokens: 64, Key: "key-3f9a"},
			{ID: "t-qwen-batch", Model: "qwen", Priority: "batch", MaxTokens: 300, PromptTokens: 900, Key: "key-77c1"},
			{ID: "t-mistral", Model: "mistral", Priority: "interactive", MaxTokens: 128, PromptTokens: 10, Key: "key-3f9a"},
		},
		Candidates: []Candidate{
			{ID: "w1", Pool: "gpu-a", Model: "llama", SlotsFree: 2, SlotsTotal: 4, Load: 0.5, TokensPerSecond: 85,
				Labels: map[string]string{"gpu": "a100", "cost_per_hour": "3.20"}},
			{ID: "w2", Pool: "gpu-b", Model: "llama", SlotsFree: 3, SlotsTotal: 4, Load: 0.25, TokensPerSecond: 60,
				CachedPrefix: 64, Labels: map[string]string{"gpu": "l4", "cost_per_hour": "0.80"}},
			{ID: "w3", Pool: "cpu", Model: "llama", SlotsFree: 3, SlotsTotal: 4, Load: 0.25, TokensPerSecond: 12,
				Labels: map[string]string{"cost_per_hour": "0.10"}},
			{ID: "w4", Pool: "gpu-a", Model: "qwen", SlotsFree: 1, SlotsTotal: 4, Load: 0.75, TokensPerSecond: 120,
				Labels: map[string]string{"gpu": "a100", "cost_per_hour": "3.20"}},
			{ID: "w5", Pool: "gpu-b", Model: "qwen", SlotsFree: 4, SlotsTotal: 4, Load: 0, TokensPerSecond: 70,
				Labels: map[string]string{"gpu": "l4", "cost_per_hour": "0.80"}},
		},
	}
}
