package orchestrator

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai/openaitest"
	"github.com/llorch/llorch/core/testkit"
)

// End-to-end tests of mid-stream migration: a task whose worker is lost
// (killed, frozen, drained with migrate) continues on another worker from the
// tokens already sent, and the client's stream says so with one migrated
// event and no repeated or missing token.

// migrateN is the length of the tests' tasks: long enough that a kill after
// the 20th token the test reads lands well before the worker's last token on
// a fast machine, short enough to keep the tests quick under -race.
const migrateN = 1500

// greedyTask is a request whose every token depends on the ones before it:
// greedy with the strongest repetition penalty (as core/workerd's resume
// tests), so a continuation that missed or repeated a token, or sampled
// without the resumed ones, would write something else from there on. The
// prompt is never taken from a cache, so the continuation evaluates prompt +
// resumed tokens in one batch where the uncut run decoded them one by one.
func greedyTask(prompt string, n int) *api.TaskRequest {
	r := taskReq("tiny", prompt, n, 1)
	r.RepetitionPenalty = ptr(10.0)
	r.CachePrompt = ptr(false)
	return r
}

// twoWorkers starts an orchestrator with cfg and workers w1 and w2 (one slot
// each) on the tiny model.
func twoWorkers(t *testing.T, cfg Config, extra ...string) (*orch, map[string]*testkit.Worker) {
	t.Helper()
	o := startOrch(t, cfg)
	ws := map[string]*testkit.Worker{}
	for _, id := range []string{"w1", "w2"} {
		ws[id] = o.startDigestedWorker(t, id, extra...)
	}
	return o, ws
}

// startDigestedWorker starts a worker (one slot) and waits until the
// orchestrator knows its model file's digest: a worker registers before it
// has hashed the file and registers again with the digest, and a task that
// moves may only go to a worker with the same file.
func (o *orch) startDigestedWorker(t *testing.T, id string, extra ...string) *testkit.Worker {
	t.Helper()
	w := startWorker(t, o, id, 1, extra...)
	waitFor(t, 30*time.Second, id+"'s model digest", func() bool {
		list := decode[struct{ Workers []api.WorkerView }](t, o.do(t, http.MethodGet, "/v2/workers", nil), http.StatusOK)
		return slices.ContainsFunc(list.Workers, func(v api.WorkerView) bool { return v.WorkerID == id && v.Model.Digest != "" })
	})
	return w
}

func other(id string) string {
	if id == "w1" {
		return "w2"
	}
	return "w1"
}

// streamAndAct submits req as a live stream; once the stream has relayed
// token number after from the worker that started it, it calls act with that
// worker's id (once). It returns the whole live stream.
func (o *orch) streamAndAct(t *testing.T, req *api.TaskRequest, after int, act func(worker string)) []ev {
	t.Helper()
	var first string
	acted := false
	evs := follow(t, o.do(t, http.MethodPost, "/v2/tasks", req, "Accept", "text/event-stream"), func(e ev) {
		switch e.Name {
		case api.EventStarted:
			var s api.Started
			if err := json.Unmarshal(e.Data, &s); err != nil {
				t.Fatalf("started %s: %v", e.Data, err)
			}
			if first == "" {
				first = s.WorkerID
			}
		case api.EventToken:
			if !acted && e.token().I >= after {
				if first == "" {
					t.Fatalf("token before started")
				}
				acted = true
				act(first)
			}
		}
	})
	if !acted {
		t.Fatalf("the stream ended before token %d: %v", after, relayed(evs))
	}
	return evs
}

// run is what a migration test reads from a finished stream.
type run struct {
	started api.Started
	tokens  []api.Token
	moves   []api.Migrated
	end     *api.End   // nil when the stream ended with an error
	err     *api.Error // the terminal error
}

func (r run) text() string {
	var b strings.Builder
	for _, tk := range r.tokens {
		b.WriteString(tk.T)
	}
	return b.String()
}

func (r run) ids() []int32 {
	out := make([]int32, len(r.tokens))
	for i, tk := range r.tokens {
		out[i] = tk.ID
	}
	return out
}

// checkMigrations asserts the migration contract on a whole stream (ids from
// 1): exactly one started event, first, the first worker's; token indexes 0,
// 1, ... without a gap or repeat; every migrated event right before the token
// event with index at_token, its from the worker that streamed the tokens
// before it, its to another; one terminal event, last.
func checkMigrations(t *testing.T, evs []ev) run {
	t.Helper()
	evs = relayed(evs)
	checkStream(t, evs, 0)
	var r run
	if evs[0].Name != api.EventStarted {
		t.Fatalf("the stream opens with %s, not started: %v", evs[0].Name, evs)
	}
	if err := json.Unmarshal(evs[0].Data, &r.started); err != nil {
		t.Fatal(err)
	}
	on := r.started.WorkerID
	for i, e := range evs {
		switch e.Name {
		case api.EventStarted:
			if i != 0 {
				t.Fatalf("a second started event (#%d, %s)", i, e.Data)
			}
		case api.EventToken:
			tk := e.token()
			if tk.I != len(r.tokens) {
				t.Fatalf("token event #%d has index %d, want %d", i, tk.I, len(r.tokens))
			}
			r.tokens = append(r.tokens, tk)
		case api.EventMigrated:
			var m api.Migrated
			if err := json.Unmarshal(e.Data, &m); err != nil {
				t.Fatalf("migrated %s: %v", e.Data, err)
			}
			if m.From != on || m.To == "" || m.To == m.From || m.AtToken != len(r.tokens) {
				t.Fatalf("migrated %+v after %d tokens from %s", m, len(r.tokens), on)
			}
			if i+1 >= len(evs) || evs[i+1].Name != api.EventToken || evs[i+1].token().I != m.AtToken {
				t.Fatalf("migrated event #%d is not right before token %d: %v", i, m.AtToken, evs[i:min(i+3, len(evs))])
			}
			r.moves = append(r.moves, m)
			on = m.To
		case api.EventEnd:
			r.end = &api.End{}
			if err := json.Unmarshal(e.Data, r.end); err != nil {
				t.Fatal(err)
			}
		case api.EventError:
			a := e.apiError()
			r.err = &a
		}
	}
	return r
}

// metric is the value of the sample of the orchestrator's /metrics whose
// name and labels are series (`name{label="v"}`); 0 when absent.
func (o *orch) metric(t *testing.T, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(get(t, o.URL+"/metrics")))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// checkMigrationMetrics asserts llorch_migrations_total: want[reason] for
// each reason, 0 for the others.
func (o *orch) checkMigrationMetrics(t *testing.T, want map[string]float64) {
	t.Helper()
	for _, reason := range []string{"died", "hung", "drain", "error"} {
		if got := o.metric(t, `llorch_migrations_total{reason="`+reason+`"}`); got != want[reason] {
			t.Errorf("llorch_migrations_total{reason=%q} = %v, want %v", reason, got, want[reason])
		}
	}
}

// reference runs req uninterrupted and returns its stream.
func (o *orch) reference(t *testing.T, req *api.TaskRequest) run {
	t.Helper()
	ref := checkMigrations(t, o.submitStream(t, req))
	if ref.end == nil || len(ref.moves) != 0 || len(ref.tokens) != *req.MaxTokens {
		t.Fatalf("reference run: %d tokens, %d moves, end %+v, error %+v", len(ref.tokens), len(ref.moves), ref.end, ref.err)
	}
	return ref
}

// sameRun reports the first difference between a migrated run and the
// uncut reference, token by token.
func sameRun(t *testing.T, got, ref run, cut int) {
	t.Helper()
	if i := slices.IndexFunc(got.tokens, func(tk api.Token) bool {
		return tk.I >= len(ref.tokens) || tk.ID != ref.tokens[tk.I].ID || tk.T != ref.tokens[tk.I].T
	}); i >= 0 {
		lo, hi := max(i-3, 0), min(i+4, len(got.tokens), len(ref.tokens))
		t.Fatalf("migrated at token %d: token %d differs from the uncut run: got ids %v, want %v (text %q vs %q)",
			cut, i, got.ids()[lo:hi], ref.ids()[lo:hi], got.tokens[i].T, ref.tokens[min(i, len(ref.tokens)-1)].T)
	}
	if len(got.tokens) != len(ref.tokens) || got.text() != ref.text() {
		t.Fatalf("migrated at token %d: %d tokens %q, want %d %q", cut, len(got.tokens), got.text(), len(ref.tokens), ref.text())
	}
}

// TestMigrationKilledWorkerGreedy: a worker killed (SIGKILL) mid-stream; the
// task continues on the other worker from the tokens sent, and the client
// gets exactly the uncut run's tokens, one migrated event (died) between.
// The cut falls early, midway and late; the killed worker comes back (a new
// process) for the next cut.
func TestMigrationKilledWorkerGreedy(t *testing.T) {
	o, ws := twoWorkers(t, testConfig())
	req := greedyTask("Once upon a time", migrateN)
	ref := o.reference(t, req)

	for i, after := range []int{20, migrateN / 3, migrateN * 2 / 3} {
		var killed string
		evs := o.streamAndAct(t, req, after, func(w string) { killed = w; kill(ws[w]) })
		got := checkMigrations(t, evs)
		if len(got.moves) != 1 {
			t.Fatalf("%d migrated events, want 1: %+v", len(got.moves), got.moves)
		}
		m := got.moves[0]
		if m.From != killed || m.To != other(killed) || m.Reason != "died" || m.AtToken <= after {
			t.Fatalf("migrated %+v, killed %s after token %d", m, killed, after)
		}
		if got.started.WorkerID != killed {
			t.Fatalf("started on %s, killed %s", got.started.WorkerID, killed)
		}
		sameRun(t, got, ref, m.AtToken)
		if got.end == nil || got.end.TokensOut != migrateN || got.end.StopReason != api.StopMaxTokens || got.end.PromptTokens != ref.end.PromptTokens {
			t.Fatalf("end %+v (error %+v), want %d tokens, MAX_TOKENS, prompt_tokens %d", got.end, got.err, migrateN, ref.end.PromptTokens)
		}
		t.Logf("killed %s after token %d, migrated at token %d of %d", killed, after, m.AtToken, migrateN)

		// The task's record and its replayed stream say the same.
		st := o.onlyTask(t)
		if st.Status != api.TaskSucceeded || st.WorkerID != m.To || st.TokensOut != migrateN || st.Text != ref.text() {
			t.Fatalf("task status %+v", st)
		}
		replay := checkMigrations(t, readAll(t, o.do(t, http.MethodGet, "/v2/tasks/"+st.TaskID+"/events", nil)))
		if len(replay.moves) != 1 || replay.moves[0] != m || replay.text() != ref.text() {
			t.Fatalf("replay: moves %+v, %d tokens", replay.moves, len(replay.tokens))
		}
		o.checkMigrationMetrics(t, map[string]float64{"died": float64(i + 1)})
		ws[killed] = o.startDigestedWorker(t, killed)
	}
}

// onlyTask is the status of the last submitted task (by creation time).
func (o *orch) onlyTask(t *testing.T) api.TaskStatus {
	t.Helper()
	list := decode[struct{ Tasks []api.TaskStatus }](t, o.do(t, http.MethodGet, "/v2/tasks", nil), http.StatusOK)
	if len(list.Tasks) == 0 {
		t.Fatal("no tasks")
	}
	last := slices.MaxFunc(list.Tasks, func(a, b api.TaskStatus) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return o.taskStatus(t, last.TaskID) // with its text
}

// TestMigrationStopSequence: a stop sequence that the uncut run writes after
// the cut ends the migrated task there (STOP_SEQUENCE, the text before it).
func TestMigrationStopSequence(t *testing.T) {
	o, ws := twoWorkers(t, testConfig())
	req := greedyTask("The sea", migrateN)
	ref := o.reference(t, req)
	text := ref.text()
	// A stop: five ASCII bytes that first occur at a token boundary near the
	// middle of the run, far after the cut (the test kills at token 20).
	stopTok, at := 0, 0
	for i := migrateN / 2; i < migrateN-10 && stopTok == 0; i++ {
		b := len(ref.textUpTo(i))
		if b+5 <= len(text) && isASCIIText(text[b:b+5]) && strings.Index(text, text[b:b+5]) == b {
			stopTok, at = i, b
		}
	}
	if stopTok == 0 {
		t.Fatalf("no usable stop sequence in %q", text)
	}
	stop := text[at : at+5]
	req.Stop = []string{stop}

	var killed string
	got := checkMigrations(t, o.streamAndAct(t, req, 20, func(w string) { killed = w; kill(ws[w]) }))
	if len(got.moves) != 1 || got.moves[0].From != killed || got.moves[0].Reason != "died" {
		t.Fatalf("migrated %+v, killed %s", got.moves, killed)
	}
	if got.moves[0].AtToken >= stopTok {
		t.Fatalf("migrated at token %d, after the stop sequence's token %d: the machine is too fast for this test", got.moves[0].AtToken, stopTok)
	}
	if got.end == nil || got.end.StopReason != api.StopSequence || got.end.StopSequenceMatched != stop || got.text() != text[:at] {
		t.Fatalf("end %+v (error %+v), text %q; want STOP_SEQUENCE %q after %q", got.end, got.err, got.text(), stop, text[:at])
	}
	if n := len(got.tokens); n > len(ref.tokens) || !slices.Equal(got.ids(), ref.ids()[:n]) {
		t.Fatalf("token ids %v differ from the uncut run's %v", got.ids(), ref.ids()[:min(n, len(ref.tokens))])
	}
	if got.end.TokensOut != len(got.tokens) || got.end.PromptTokens != ref.end.PromptTokens {
		t.Fatalf("end %+v: %d token events, reference prompt_tokens %d", got.end, len(got.tokens), ref.end.PromptTokens)
	}
	o.checkMigrationMetrics(t, map[string]float64{"died": 1})
}

// textUpTo is the text of the first k tokens.
func (r run) textUpTo(k int) string {
	return run{tokens: r.tokens[:k]}.text()
}

func isASCIIText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestMigrationHungWorker: a frozen worker (SIGSTOP: the connection stays
// open, heartbeats stop, /health does not answer) is found hung and its task
// moves, with a migrated event whose reason is hung.
func TestMigrationHungWorker(t *testing.T) {
	o, ws := twoWorkers(t, testConfig())
	var frozen string
	got := checkMigrations(t, o.streamAndAct(t, greedyTask("a long story", migrateN), 20, func(w string) {
		frozen = w
		if err := ws[w].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws[w].Cmd.Process.Signal(syscall.SIGCONT) })
	}))
	if len(got.moves) != 1 {
		t.Fatalf("%d migrated events, want 1: %+v", len(got.moves), got.moves)
	}
	if m := got.moves[0]; m.From != frozen || m.To != other(frozen) || m.Reason != "hung" {
		t.Fatalf("migrated %+v, frozen %s", m, frozen)
	}
	if len(got.tokens) != migrateN || got.end == nil || got.end.TokensOut != migrateN {
		t.Fatalf("%d tokens, end %+v, error %+v", len(got.tokens), got.end, got.err)
	}
	if s := o.workerState(frozen); s != api.WorkerUnhealthy && s != api.WorkerDead {
		t.Fatalf("frozen worker %s is %s", frozen, s)
	}
	o.checkMigrationMetrics(t, map[string]float64{"hung": 1})
}

// workerHealth is a worker's own /health.
func workerHealth(t *testing.T, w *testkit.Worker) api.Health {
	t.Helper()
	var h api.Health
	if err := json.Unmarshal([]byte(get(t, w.URL+"/health")), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDrainMigratesRunningTasks: drained with migrate, a worker's running
// task moves to the other worker at once (its slot is freed) and finishes
// there.
func TestDrainMigratesRunningTasks(t *testing.T) {
	o, ws := twoWorkers(t, testConfig())
	var drained string
	got := checkMigrations(t, o.streamAndAct(t, greedyTask("drain me", migrateN), 20, func(w string) {
		drained = w
		v := decode[api.WorkerView](t, o.do(t, http.MethodPost, "/v2/workers/"+w+"/drain", api.DrainRequest{Migrate: true}), http.StatusAccepted)
		if v.State != api.WorkerDraining {
			t.Fatalf("drain: %+v", v)
		}
		// The job stops there at once; it is not left to run to its end.
		waitFor(t, 10*time.Second, w+"'s slot freed", func() bool { return workerHealth(t, ws[w]).SlotsBusy == 0 })
		if st := o.onlyTask(t); st.Status == api.TaskSucceeded {
			t.Fatalf("the drained worker's slot was freed only when the task had ended: %+v", st)
		}
	}))
	if len(got.moves) != 1 {
		t.Fatalf("%d migrated events, want 1: %+v", len(got.moves), got.moves)
	}
	if m := got.moves[0]; m.From != drained || m.To != other(drained) || m.Reason != "drain" {
		t.Fatalf("migrated %+v, drained %s", m, drained)
	}
	if len(got.tokens) != migrateN || got.end == nil || got.end.TokensOut != migrateN {
		t.Fatalf("%d tokens, end %+v, error %+v", len(got.tokens), got.end, got.err)
	}
	if h := workerHealth(t, ws[drained]); h.SlotsBusy != 0 {
		t.Fatalf("drained worker's health %+v", h)
	}
	if s := o.workerState(drained); s != api.WorkerDraining {
		t.Fatalf("drained worker %s is %s", drained, s)
	}
	o.checkMigrationMetrics(t, map[string]float64{"drain": 1})
}

// TestDrainMigrateOffKeepsRunningTask: a drain without migrate (no body, or
// migrate false) leaves a running task where it is, to finish there.
func TestDrainMigrateOffKeepsRunningTask(t *testing.T) {
	for _, c := range []struct {
		name string
		body any
	}{{"no body", nil}, {"migrate false", api.DrainRequest{Migrate: false}}} {
		t.Run(c.name, func(t *testing.T) {
			o, _ := twoWorkers(t, testConfig())
			var drained string
			var runningAfter bool
			got := checkMigrations(t, o.streamAndAct(t, greedyTask("stay", migrateN), 20, func(w string) {
				drained = w
				decode[api.WorkerView](t, o.do(t, http.MethodPost, "/v2/workers/"+w+"/drain", c.body), http.StatusAccepted)
				runningAfter = o.onlyTask(t).Status == api.TaskRunning
			}))
			if len(got.moves) != 0 || len(got.tokens) != migrateN || got.end == nil {
				t.Fatalf("moves %+v, %d tokens, end %+v, error %+v", got.moves, len(got.tokens), got.end, got.err)
			}
			if !runningAfter {
				t.Fatalf("the task was not running after the drain: the check proves nothing")
			}
			if st := o.onlyTask(t); st.WorkerID != drained || st.Status != api.TaskSucceeded {
				t.Fatalf("status %+v, drained %s", st, drained)
			}
			if s := o.workerState(drained); s != api.WorkerDraining {
				t.Fatalf("drained worker %s is %s", drained, s)
			}
			o.checkMigrationMetrics(t, nil)
		})
	}
}

// TestMigrationWorkerLost: when no worker may take the task over, the stream
// ends with one retriable WORKER_LOST error.
func TestMigrationWorkerLost(t *testing.T) {
	t.Run("one worker, migrations off", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxMigrations = -1
		o := startOrch(t, cfg)
		w := startWorker(t, o, "w1", 1)
		got := checkMigrations(t, o.streamAndAct(t, greedyTask("doomed", migrateN), 20, func(string) { kill(w) }))
		if len(got.moves) != 0 || got.err == nil || got.err.Code != api.CodeWorkerLost || !got.err.Retriable {
			t.Fatalf("moves %+v, error %+v, end %+v", got.moves, got.err, got.end)
		}
		o.checkMigrationMetrics(t, nil)
	})
	// With --unavailable reject the task does not wait for a worker to come
	// back: no other worker can continue it now, so the stream ends.
	t.Run("one worker, unavailable reject", func(t *testing.T) {
		cfg := testConfig()
		cfg.Unavailable = "reject"
		o := startOrch(t, cfg)
		w := startWorker(t, o, "w1", 1)
		got := checkMigrations(t, o.streamAndAct(t, greedyTask("alone", migrateN), 20, func(string) { kill(w) }))
		if len(got.moves) != 0 || got.err == nil || got.err.Code != api.CodeWorkerLost || !got.err.Retriable {
			t.Fatalf("moves %+v, error %+v, end %+v", got.moves, got.err, got.end)
		}
		o.checkMigrationMetrics(t, nil)
	})
	t.Run("two workers, limit one move", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxMigrations = 1
		o, ws := twoWorkers(t, cfg)
		// Kill the first worker after token 20, the second 20 tokens after
		// it took over: the task may move only once.
		var first, second string
		moved := -1
		evs := follow(t, o.do(t, http.MethodPost, "/v2/tasks", greedyTask("doomed twice", migrateN), "Accept", "text/event-stream"), func(e ev) {
			switch e.Name {
			case api.EventStarted:
				var s api.Started
				_ = json.Unmarshal(e.Data, &s)
				first = s.WorkerID
			case api.EventMigrated:
				var m api.Migrated
				_ = json.Unmarshal(e.Data, &m)
				moved, second = m.AtToken, m.To
			case api.EventToken:
				switch i := e.token().I; {
				case i == 20 && first != "":
					kill(ws[first])
				case moved >= 0 && i == moved+20 && ws[second] != nil:
					kill(ws[second])
				}
			}
		})
		got := checkMigrations(t, evs)
		if len(got.moves) != 1 || got.moves[0].From != first || got.moves[0].Reason != "died" {
			t.Fatalf("moves %+v, first worker %s", got.moves, first)
		}
		if got.err == nil || got.err.Code != api.CodeWorkerLost || !got.err.Retriable || got.end != nil {
			t.Fatalf("error %+v, end %+v", got.err, got.end)
		}
		if len(got.tokens) < got.moves[0].AtToken+20 || len(got.tokens) >= migrateN {
			t.Fatalf("%d tokens, moved at %d", len(got.tokens), got.moves[0].AtToken)
		}
		o.checkMigrationMetrics(t, map[string]float64{"died": 1})
	})
}

// TestMigrationOpenAISDK: the official openai client streams a chat
// completion (tests/openai-sdk/migrate.mjs) while the test kills its worker;
// the stream just continues: the same text as an uncut run, usage right, one
// finish_reason.
func TestMigrationOpenAISDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0001", Role: RoleAdmin}, {Secret: "sk-user-0001", Role: RoleUser}}
	cfg.WorkerToken = "worker-token-1"
	o, ws := twoWorkers(t, cfg, "--token", "worker-token-1")

	body := map[string]any{
		"model":          "tiny",
		"messages":       []map[string]string{{"role": "user", "content": "Tell me a long story."}},
		"max_tokens":     migrateN,
		"temperature":    0,
		"seed":           1,
		"repeat_penalty": 10,
		"logit_bias":     json.RawMessage(noEOS(t)),
	}
	ref := decode[chatCompletion](t, o.do(t, http.MethodPost, "/v1/chat/completions", body), http.StatusOK)
	if len(ref.Choices) != 1 || ref.Usage.CompletionTokens != migrateN || ref.Choices[0].FinishReason != "length" {
		t.Fatalf("reference: %+v", ref)
	}
	spec, err := json.Marshal(map[string]any{"request": body, "text": ref.Choices[0].Message.Content,
		"completion_tokens": migrateN, "prompt_tokens": ref.Usage.PromptTokens})
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "migrate.json")
	if err := os.WriteFile(specFile, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MIGRATE_SPEC", specFile)

	// While the script streams, kill the worker of its task after 20 tokens.
	type killed struct {
		task, worker string
		err          error
	}
	done := make(chan struct{})
	result := make(chan killed, 1)
	go func() {
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				result <- killed{err: errors.New("the script ended before its task had 20 tokens")}
				return
			case <-time.After(20 * time.Millisecond):
			}
			tasks, err := runningTasks(o)
			if err != nil {
				result <- killed{err: err}
				return
			}
			for _, st := range tasks {
				if st.TokensOut > 20 && ws[st.WorkerID] != nil {
					kill(ws[st.WorkerID])
					result <- killed{task: st.TaskID, worker: st.WorkerID}
					return
				}
			}
		}
		result <- killed{err: errors.New("no running task with 20 tokens in 3 minutes")}
	}()
	sdk.RunScript(t, "migrate.mjs", o.URL, "sk-user-0001", "tiny")
	close(done)
	k := <-result
	if k.err != nil {
		t.Fatal(k.err)
	}
	st := o.taskStatus(t, k.task)
	if st.Status != api.TaskSucceeded || st.WorkerID != other(k.worker) || st.TokensOut != migrateN {
		t.Fatalf("task %+v, killed %s", st, k.worker)
	}
	got := checkMigrations(t, readAll(t, o.do(t, http.MethodGet, "/v2/tasks/"+k.task+"/events", nil)))
	if len(got.moves) != 1 || got.moves[0].From != k.worker || got.moves[0].Reason != "died" {
		t.Fatalf("moves %+v, killed %s", got.moves, k.worker)
	}
	o.checkMigrationMetrics(t, map[string]float64{"died": 1})
}

// runningTasks lists the orchestrator's running tasks (safe off the test's
// goroutine: it reports errors instead of failing).
func runningTasks(o *orch) ([]api.TaskStatus, error) {
	req, err := http.NewRequest(http.MethodGet, o.URL+"/v2/tasks?status=running", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+o.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v2/tasks: %d %s", resp.StatusCode, data)
	}
	var list struct{ Tasks []api.TaskStatus }
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	return list.Tasks, nil
}
