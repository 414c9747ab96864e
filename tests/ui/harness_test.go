// Package ui holds the dashboard's browser tests: a real `llorch orchestrate`
// (a child process, with an admin API key, so the page asks for it) and two
// real workers of the tiny synthetic model registered with it, driven through
// /ui in headless Chromium (Debian's chromium package) with chromedp.
//
// TestMain starts the fleet and one browser; each test opens its own tabs,
// each tab in a new browser context (empty sessionStorage: the page asks for
// the key again). Every tab records the console errors and warnings, the
// uncaught exceptions and the browser log's errors (a CSP violation, a failed
// request) it sees. Screenshots of each page go to the test's artifact
// directory (`go test -artifacts -outputdir DIR ./tests/ui` keeps them).
//
// Without chromium the browser tests skip, or fail when the environment
// variable CI is set (.ci/run installs it).
package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/testkit"
)

// The fleet's names are distinctive, so that a test can look for them in
// what /ui serves without a key.
const (
	adminKey    = "uitest-admin-key-5c81e2"
	wrongKey    = "uitest-wrong-key-9d04aa"
	workerToken = "uitest-worker-token-33f1"
	modelID     = "uitest-model-7b1d"
	poolName    = "uitest-pool-e62c"
)

// workerIDs are the two workers, in the order they start.
var workerIDs = []string{"uitest-worker-a1", "uitest-worker-b2"}

// Viewport of every tab, and so of the screenshots.
const viewW, viewH = 1280, 900

var (
	kit *testkit.Kit
	fl  *fleet
	br  *browser // nil when chromium is missing; then brMissing says why
	// brMissing is why there is no browser.
	brMissing string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	k, err := testkit.Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer k.Close()
	kit = k
	f, err := startFleet(k)
	if f != nil {
		defer f.stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ui tests:", err)
		if f != nil {
			f.printLogs()
		}
		return 1
	}
	fl = f
	b, err := startBrowser(k.Dir)
	switch {
	case errors.Is(err, errNoChromium):
		brMissing = err.Error()
	case err != nil:
		fmt.Fprintln(os.Stderr, "ui tests:", err)
		return 1
	default:
		br = b
		defer b.stop()
	}
	code := m.Run()
	if code != 0 {
		f.printLogs()
		if br != nil {
			br.printLog()
		}
	}
	return code
}

// --- the fleet ---

// fleet is the orchestrator and its two workers, child processes in their
// own process groups (killed with the test binary, however it ends).
type fleet struct {
	URL     string             // the orchestrator's
	c       *orchclient.Client // with the admin key
	orch    *testkit.Proc
	workers []*testkit.Proc
}

// startFleet starts the orchestrator with an admin API key and two workers
// that register with it, and waits until both are healthy. On error the
// fleet returned (if any) holds what started, to stop and to print.
func startFleet(k *testkit.Kit) (*fleet, error) {
	deadline := time.Now().Add(3 * time.Minute)
	keyFile := filepath.Join(k.Dir, "api-keys")
	if err := os.WriteFile(keyFile, []byte(adminKey+" admin uitest\n"), 0o600); err != nil {
		return nil, err
	}
	addr := filepath.Join(k.Dir, "orch.addr")
	f := &fleet{}
	var err error
	f.orch, err = testkit.StartProc("orchestrator", k.Bin, filepath.Join(k.Dir, "orchestrator.log"),
		"orchestrate", "--listen", "127.0.0.1:0", "--addr-file", addr, "--data-dir", filepath.Join(k.Dir, "orch-data"),
		"--api-key-file", keyFile, "--worker-token", workerToken, "--log-level", "debug")
	if err != nil {
		return nil, err
	}
	if f.URL, err = f.orch.WaitAddr(context.Background(), addr, deadline); err != nil {
		return f, err
	}
	f.c, err = orchclient.New(f.URL, adminKey, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return f, err
	}
	for _, id := range workerIDs {
		waddr := filepath.Join(k.Dir, id+".addr")
		w, err := testkit.StartProc(id, k.Bin, filepath.Join(k.Dir, id+".log"),
			"worker", "--model", k.Tiny, "--model-id", modelID, "--port", "0", "--addr-file", waddr,
			"--worker-id", id, "--pool", poolName, "--orchestrator", f.URL, "--token", workerToken,
			"--threads", "1", "--slots", "2")
		if err != nil {
			return f, err
		}
		f.workers = append(f.workers, w)
		if _, err := w.WaitAddr(context.Background(), waddr, deadline); err != nil {
			return f, err
		}
	}
	// Both registered and healthy.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, err := f.c.Workers(ctx)
		cancel()
		healthy := 0
		for _, w := range ws {
			if w.State == api.WorkerHealthy {
				healthy++
			}
		}
		if err == nil && healthy == len(workerIDs) {
			return f, nil
		}
		for _, p := range append([]*testkit.Proc{f.orch}, f.workers...) {
			if p.Exited() {
				return f, fmt.Errorf("%s exited: %v", p.Name, p.Err())
			}
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("the workers are not both healthy after 3 minutes (last answer: %d healthy, %v)", healthy, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the orchestrator first (so nothing reconnects), then the
// workers: SIGTERM to each group, SIGKILL after a short grace.
func (f *fleet) stop() {
	for _, p := range append([]*testkit.Proc{f.orch}, f.workers...) {
		if p == nil {
			continue
		}
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
	}
}

// printLogs prints the tail of every process's log (a failed run).
func (f *fleet) printLogs() {
	for _, p := range append([]*testkit.Proc{f.orch}, f.workers...) {
		if p != nil {
			fmt.Fprintf(os.Stderr, "--- %s log (%s), last 80 lines:\n%s\n", p.Name, p.LogPath, p.Tail(80))
		}
	}
}

// --- the browser ---

var errNoChromium = errors.New("ui tests: chromium is not installed (Debian: apt-get install chromium)")

// browser is one headless Chromium; tabs are opened in it by newTab.
type browser struct {
	ctx       context.Context // the browser's chromedp context
	cancel    context.CancelFunc
	allocStop context.CancelFunc
	logPath   string
}

// startBrowser starts headless Chromium (its output in dir/chromium.log).
func startBrowser(dir string) (*browser, error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, errNoChromium
	}
	b := &browser{logPath: filepath.Join(dir, "chromium.log")}
	logf, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where the sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(viewW, viewH),
		chromedp.UserDataDir(filepath.Join(dir, "chromium-profile")),
		chromedp.CombinedOutput(logf),
	)
	allocCtx, allocStop := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp's own complaints go to the same log.
	logTo := func(format string, args ...any) {
		fmt.Fprintf(logf, time.Now().Format("15:04:05.000")+" chromedp: "+format+"\n", args...)
	}
	b.ctx, b.cancel = chromedp.NewContext(allocCtx, chromedp.WithErrorf(logTo), chromedp.WithLogf(logTo))
	b.allocStop = func() { allocStop(); logf.Close() }
	// The first action starts the browser; its context must outlive it (no
	// timeout), so the wait for it is bounded here.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(b.ctx) }()
	select {
	case err = <-started:
	case <-time.After(2 * time.Minute):
		err = errors.New("no answer in 2 minutes")
	}
	if err != nil {
		b.stop()
		data, _ := os.ReadFile(b.logPath)
		return nil, fmt.Errorf("starting chromium %s: %w\n%s", path, err, data)
	}
	return b, nil
}

func (b *browser) stop() {
	b.cancel()
	b.allocStop()
}

// printLog prints the end of the browser's output, without its complaints
// about the missing D-Bus (a container has none).
func (b *browser) printLog() {
	data, _ := os.ReadFile(b.logPath)
	var keep []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, "dbus") {
			keep = append(keep, l)
		}
	}
	out := strings.Join(keep, "\n")
	const max = 4000
	if len(out) > max {
		out = out[len(out)-max:]
	}
	fmt.Fprintf(os.Stderr, "--- chromium output (%s), last %d bytes without D-Bus lines:\n%s\n", b.logPath, max, out)
}

// needBrowser returns the browser, or skips the test without chromium (fails
// it under CI, which installs chromium).
func needBrowser(t *testing.T) *browser {
	t.Helper()
	if br == nil {
		if os.Getenv("CI") != "" {
			t.Fatal(brMissing)
		}
		t.Skip(brMissing + " (CI would fail here)")
	}
	return br
}

// tab is one browser tab in a browser context of its own, with what its
// console said.
type tab struct {
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string // errors and warnings, uncaught exceptions, log errors
}

// newTab opens a tab that lives until deadline or the end of the test, with
// the viewport viewW×viewH.
func (b *browser) newTab(t *testing.T, name string, deadline time.Time) *tab {
	t.Helper()
	tb := &tab{name: name}
	dctx, dcancel := context.WithDeadline(b.ctx, deadline)
	ctx, cancel := chromedp.NewContext(dctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(tb.listen))
	t.Cleanup(func() { cancel(); dcancel() })
	tb.ctx = ctx
	// The first action opens the tab, which then lives as long as the
	// context of that action: the tab's own (bounded by deadline).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening tab %s: %v", name, err)
	}
	if err := tb.do(30*time.Second, chromedp.EmulateViewport(viewW, viewH)); err != nil {
		t.Fatalf("opening tab %s: %v", name, err)
	}
	return tb
}

// listen records the console's problems. It runs in the tab's event loop.
func (tb *tab) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d:%d)", d.URL, d.LineNumber+1, d.ColumnNumber+1)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning {
			return
		}
		var args []string
		for _, a := range ev.Args {
			switch {
			case len(a.Value) > 0:
				args = append(args, string(a.Value))
			default:
				args = append(args, a.Description)
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("log %s error: %s", e.Source, e.Text)
		if e.URL != "" {
			msg += " (" + e.URL + ")"
		}
	default:
		return
	}
	tb.mu.Lock()
	tb.console = append(tb.console, msg)
	tb.mu.Unlock()
}

// consoleProblems returns what the console said so far.
func (tb *tab) consoleProblems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// do runs actions in the tab, all within limit.
func (tb *tab) do(limit time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tb.ctx, limit)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// must runs actions within limit and fails the test on error, saying what.
func (tb *tab) must(t *testing.T, what string, limit time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := tb.do(limit, actions...); err != nil {
		t.Fatalf("%s (tab %s): %v\n%s", what, tb.name, err, tb.describe())
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise)
// within limit and decodes its value into T.
func eval[T any](tb *tab, limit time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, limit)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// describe is a short account of the tab for failure messages: its URL, the
// error banner and login error, and what its console said.
func (tb *tab) describe() string {
	type state struct {
		URL, Error, LoginError, Toast string
	}
	s, err := eval[state](tb, 5*time.Second, `(() => {
		const txt = (sel) => { const e = document.querySelector(sel); return e && !e.hidden ? e.textContent.trim() : ""; };
		return {URL: location.href, Error: txt("#error-text") || txt("#error"), LoginError: txt("#login-error"), Toast: txt("#toast")};
	})()`)
	if err != nil {
		return fmt.Sprintf("  (page state unreadable: %v)", err)
	}
	out := fmt.Sprintf("  page %s; #error %q; #login-error %q; #toast %q", s.URL, s.Error, s.LoginError, s.Toast)
	if c := tb.consoleProblems(); len(c) > 0 {
		out += "\n  console:\n    " + strings.Join(c, "\n    ")
	}
	return out
}

// waitFor polls cond (every 50 ms) until it returns nil, failing the test
// with what and cond's last error when limit passes.
func (tb *tab) waitFor(t *testing.T, limit time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(tb.ctx, limit, cond); err != nil {
		t.Fatalf("%s (tab %s, after %s): %v\n%s", what, tb.name, limit, err, tb.describe())
	}
}

// poll calls cond until it returns nil, limit passes or ctx ends; it returns
// cond's last error then.
func poll(ctx context.Context, limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// text returns the trimmed text of the first element matching sel, or an
// error when there is none.
func (tb *tab) text(sel string) (string, error) {
	type res struct {
		Found bool
		Text  string
	}
	r, err := eval[res](tb, 10*time.Second, fmt.Sprintf(`(() => {
		const e = document.querySelector(%s);
		return e ? {Found: true, Text: e.textContent.trim()} : {Found: false, Text: ""};
	})()`, jsString(sel)))
	if err != nil {
		return "", err
	}
	if !r.Found {
		return "", fmt.Errorf("no element %s", sel)
	}
	return r.Text, nil
}

// login opens /ui/ in the tab, waits for the login form and sends key.
func (tb *tab) login(t *testing.T, key string) {
	t.Helper()
	tb.must(t, "loading /ui/ and waiting for form#login", 60*time.Second,
		chromedp.Navigate(fl.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("form#login")),
	)
	tb.must(t, "typing the API key", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS("input#key"), key),
		chromedp.Click(chromedp.CSS("#login-submit")),
	)
}

// show navigates to a hash route of the page (#/tasks ...) without a reload.
func (tb *tab) show(t *testing.T, hash string) {
	t.Helper()
	if _, err := eval[bool](tb, 10*time.Second, "(location.hash = "+jsString(hash)+", true)"); err != nil {
		t.Fatalf("going to %s: %v", hash, err)
	}
}

// screenshot writes a full-page PNG of the tab as dir/name.png.
func (tb *tab) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s", path)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// terminal reports whether a task status is final.
func terminal(status string) bool {
	switch status {
	case api.TaskSucceeded, api.TaskFailed, api.TaskCancelled:
		return true
	}
	return false
}

// submit posts a task of the fleet's model (ignore_eos, maxTokens) through
// the API and returns its id.
func submit(t *testing.T, prompt string, maxTokens int) api.TaskAccepted {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req := &api.TaskRequest{Model: modelID}
	req.Prompt = prompt
	req.MaxTokens = &maxTokens
	req.IgnoreEOS = true
	acc, err := fl.c.Submit(ctx, req)
	if err != nil {
		t.Fatalf("POST /v2/tasks: %v", err)
	}
	return acc
}

// waitTask polls GET /v2/tasks/{id} until the task ends, within limit.
func waitTask(t *testing.T, id string, limit time.Duration) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	err := poll(t.Context(), limit, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		if st, err = fl.c.Task(ctx, id); err != nil {
			return err
		}
		if !terminal(st.Status) {
			return fmt.Errorf("task %s is %s", id, st.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("task %s did not end: %v", id, err)
	}
	return st
}
