package ui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/llorch/llorch/core/api"
)

// TestRootAndNoLeak checks with plain HTTP that / redirects to /ui/ and that
// the page and every script and style it loads, fetched without a key,
// carry nothing of the fleet: no worker id, model, pool or key.
func TestRootAndNoLeak(t *testing.T) {
	hc := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.Get(fl.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || !strings.HasSuffix(resp.Header.Get("Location"), "/ui/") {
		t.Fatalf("GET / = %d, Location %q; want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Crawl the page's files: index.html, what it references, and what the
	// ES modules import, all under /ui/.
	base, _ := url.Parse(fl.URL + "/ui/")
	seen := map[string]bool{}
	queue := []*url.URL{base}
	fetched := 0
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if seen[u.String()] {
			continue
		}
		seen[u.String()] = true
		resp, err := hc.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a key = %d; want 200", u.Path, resp.StatusCode)
			continue
		}
		fetched++
		if u == base {
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("GET /ui/: Content-Security-Policy %q; want script-src 'self' and nothing unsafe", csp)
			}
		}
		for _, secret := range append([]string{modelID, poolName, adminKey, workerToken}, workerIDs...) {
			if strings.Contains(string(body), secret) {
				t.Errorf("GET %s without a key carries %q", u.Path, secret)
			}
		}
		for _, ref := range assetRefs(string(body)) {
			r, err := u.Parse(ref)
			if err != nil || r.Host != base.Host || !strings.HasPrefix(r.Path, "/ui/") {
				continue
			}
			r.Fragment, r.RawQuery = "", ""
			queue = append(queue, r)
		}
	}
	if fetched < 2 {
		t.Errorf("fetched %d files under /ui/ (%v); want index.html and at least one script", fetched, keys(seen))
	}
	t.Logf("no fleet names in %d files: %v", fetched, keys(seen))
}

// assetRe finds the references of a page or module to other files: src= and
// href= attributes, and module imports (static and dynamic).
var assetRe = regexp.MustCompile(`(?:\b(?:src|href)\s*=\s*["']|\bfrom\s*["']|\bimport\s*\(?\s*["'])([^"'#?]+\.(?:m?js|css))["']`)

func assetRefs(body string) []string {
	var out []string
	for _, m := range assetRe.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDashboard drives the page in one tab (logged in with the admin key)
// through its pages, and opens fresh tabs for the wrong key. The subtests
// run in order and share the fleet: the drain, which takes a worker out of
// service, comes last.
func TestDashboard(t *testing.T) {
	b := needBrowser(t)
	deadline := time.Now().Add(3 * time.Minute)
	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	main := b.newTab(t, "main", deadline)

	if !t.Run("load", func(t *testing.T) {
		main.must(t, "loading /ui/ and waiting for form#login", 60*time.Second,
			chromedp.Navigate(fl.URL+"/ui/"),
			chromedp.WaitVisible(chromedp.CSS("form#login")),
		)
		main.screenshot(t, shots, "login")
		main.must(t, "typing the API key", 30*time.Second,
			chromedp.SendKeys(chromedp.CSS("input#key"), adminKey),
			chromedp.Click(chromedp.CSS("#login-submit")),
		)
		main.must(t, "waiting for the overview after the login", 60*time.Second,
			chromedp.WaitVisible(chromedp.CSS("table#workers")),
			chromedp.WaitNotVisible(chromedp.CSS("form#login")),
		)
		// The load is over once both workers are listed and a stats
		// sample has been drawn (or the charts say they are missing).
		main.waitFor(t, 30*time.Second, "the overview's first data", func() error {
			type st struct {
				Rows   int
				Points string
				Chart  string
			}
			s, err := eval[st](main, 10*time.Second, `(() => {
				const c = document.querySelector("#chart-tokens");
				return {Rows: document.querySelectorAll("table#workers tbody tr[data-worker-id]").length,
					Points: c ? (c.dataset.points || "") : "", Chart: c ? c.textContent.trim() : ""};
			})()`)
			switch {
			case err != nil:
				return err
			case s.Rows < len(workerIDs):
				return fmt.Errorf("%d worker rows", s.Rows)
			case s.Points == "" || s.Points == "0":
				if strings.Contains(s.Chart, "make ui") {
					return nil
				}
				return fmt.Errorf("#chart-tokens data-points %q", s.Points)
			}
			return nil
		})
		if c := main.consoleProblems(); len(c) > 0 {
			t.Errorf("the console during the load:\n  %s", strings.Join(c, "\n  "))
		}
		firstLoadBudget(t, main)
		labelled(t, main, "the overview")
	}) {
		t.FailNow()
	}

	t.Run("workers", func(t *testing.T) {
		for _, id := range workerIDs {
			main.waitFor(t, 30*time.Second, "worker row "+id, func() error {
				r, err := workerRow(main, id)
				switch {
				case err != nil:
					return err
				case r.State != api.WorkerHealthy:
					return fmt.Errorf("td.state %q, want %q", r.State, api.WorkerHealthy)
				case !strings.Contains(r.Model, modelID):
					return fmt.Errorf("td.model %q, want %q", r.Model, modelID)
				}
				return nil
			})
		}
		main.screenshot(t, shots, "overview")
	})

	t.Run("task", func(t *testing.T) {
		main.show(t, "#/tasks")
		main.must(t, "the tasks page", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("table#tasks")))
		acc := submit(t, "The dashboard lists this task.", 32)
		accepted := time.Now()
		row := fmt.Sprintf(`table#tasks tbody tr[data-task-id=%s]`, jsString(acc.TaskID))
		listed := func() error {
			_, err := main.text(row)
			return err
		}
		if err := poll(main.ctx, 2*time.Second, listed); err != nil {
			// Go on to the task page all the same.
			t.Errorf("the task is not in the list 2 s after the 202: %v\n%s", err, main.describe())
			main.waitFor(t, 40*time.Second, "the task in the list at all", listed)
		}
		t.Logf("task %s listed %s after the 202", acc.TaskID, time.Since(accepted).Round(time.Millisecond))
		st := waitTask(t, acc.TaskID, 60*time.Second)
		if st.Status != api.TaskSucceeded || st.WorkerID == "" || st.Explanation == nil {
			t.Fatalf("task %s: status %s, worker %q, explanation %v; want succeeded on a worker, explained", acc.TaskID, st.Status, st.WorkerID, st.Explanation)
		}
		main.waitFor(t, 10*time.Second, "the task's row says "+st.Status, func() error {
			s, err := main.text(row + " td.status")
			if err == nil && s != st.Status {
				err = fmt.Errorf("td.status %q", s)
			}
			return err
		})
		main.screenshot(t, shots, "tasks")
		labelled(t, main, "the tasks page")

		main.show(t, "#/tasks/"+acc.TaskID)
		main.waitFor(t, 15*time.Second, "the task page's explanation and timing", func() error {
			status, err := main.text("#task #task-status")
			if err != nil {
				return err
			}
			if status != st.Status {
				return fmt.Errorf("#task-status %q, want %q", status, st.Status)
			}
			expl, err := main.text("#task-explanation")
			switch {
			case err != nil:
				return err
			case !strings.Contains(expl, st.WorkerID):
				return fmt.Errorf("#task-explanation does not name the chosen worker %s: %q", st.WorkerID, expl)
			case st.Explanation.Summary != "" && !strings.Contains(expl, st.Explanation.Summary):
				return fmt.Errorf("#task-explanation lacks the scheduler's summary %q: %q", st.Explanation.Summary, expl)
			}
			timing, err := main.text("#task-timing")
			switch {
			case err != nil:
				return err
			case !strings.Contains(strings.ToLower(timing), "queue") || !strings.Contains(strings.ToLower(timing), "first token"):
				return fmt.Errorf("#task-timing lacks the queue wait or the first token: %q", timing)
			}
			n, err := eval[int](main, 10*time.Second, `document.querySelectorAll("#task-timeline li").length`)
			if err == nil && n < 3 {
				err = fmt.Errorf("#task-timeline has %d events", n)
			}
			return err
		})
		main.screenshot(t, shots, "task")
	})

	t.Run("chart", func(t *testing.T) {
		// #chart-tokens counts the samples with tokens (data-nonzero); a few
		// more tasks add at least one.
		main.show(t, "#/overview")
		main.must(t, "the overview", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("#chart-tokens")))
		before, err := chartNonzero(main)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for i := range 3 {
			ids = append(ids, submit(t, fmt.Sprintf("Chart point %d.", i), 48).TaskID)
		}
		for _, id := range ids {
			waitTask(t, id, 60*time.Second)
		}
		main.waitFor(t, 10*time.Second, "#chart-tokens with the new tasks' tokens", func() error {
			n, err := chartNonzero(main)
			if err == nil && (n < 1 || n <= before) {
				err = fmt.Errorf("#chart-tokens data-nonzero %d (%d before the tasks)", n, before)
			}
			return err
		})
		main.screenshot(t, shots, "overview-charts")
	})

	t.Run("playground", func(t *testing.T) { playground(t, main, shots) })

	t.Run("routing", func(t *testing.T) {
		main.show(t, "#/routing")
		main.must(t, "the routing page", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("textarea#rt-source")))
		// No script is loaded: the editor starts from the built-in policy
		// written as a script (embed/routing/default.tengo).
		main.waitFor(t, 15*time.Second, "the built-in policy's script in #rt-source", func() error {
			src, err := eval[string](main, 10*time.Second, `document.querySelector("textarea#rt-source").value`)
			if err == nil && !strings.Contains(src, `stage == "place"`) {
				err = fmt.Errorf("#rt-source does not hold the default script: %q", truncate(src, 200))
			}
			return err
		})
		main.must(t, "clicking #rt-check", 10*time.Second, chromedp.Click(chromedp.CSS("#rt-check")))
		main.waitFor(t, 60*time.Second, "the check's output in #rt-result", func() error {
			s, err := main.text("#rt-result")
			if err == nil && !strings.Contains(s, "check ") && !strings.Contains(s, "compiled") {
				err = fmt.Errorf("#rt-result %q", s)
			}
			return err
		})
		main.screenshot(t, shots, "routing")
		labelled(t, main, "the routing page")
	})

	t.Run("wrong-key", func(t *testing.T) {
		wrong := b.newTab(t, "wrong-key", deadline)
		wrong.login(t, wrongKey)
		wrong.waitFor(t, 15*time.Second, "#login-error", func() error {
			s, err := wrong.text("#login-error")
			if err == nil && !strings.Contains(s, "API key was rejected") {
				err = fmt.Errorf("#login-error %q", s)
			}
			return err
		})
		wrong.screenshot(t, shots, "login-error")
		// The 401 itself is in the browser's log; nothing else may be.
		for _, c := range wrong.consoleProblems() {
			if !strings.HasPrefix(c, "log network error:") || !strings.Contains(c, "401") {
				t.Errorf("the console with a wrong key: %s", c)
			}
		}
	})

	t.Run("drain", func(t *testing.T) {
		id := workerIDs[1]
		main.show(t, "#/overview")
		btn := fmt.Sprintf(`button.drain[data-worker-id=%s]`, jsString(id))
		main.must(t, "draining "+id, 30*time.Second,
			chromedp.WaitVisible(chromedp.CSS(btn)),
			chromedp.Click(chromedp.CSS(btn)),
			chromedp.WaitVisible(chromedp.CSS("dialog#confirm")),
		)
		if s, err := main.text("#confirm-text"); err != nil || !strings.Contains(s, id) {
			t.Errorf("#confirm-text %q (%v) does not name the worker %s", s, err, id)
		}
		main.must(t, "confirming the drain", 30*time.Second,
			chromedp.Click(chromedp.CSS("#confirm-ok")),
			chromedp.WaitNotVisible(chromedp.CSS("dialog#confirm")),
		)
		main.waitFor(t, 15*time.Second, "the row of "+id+" says draining", func() error {
			r, err := workerRow(main, id)
			if err == nil && r.State != api.WorkerDraining {
				err = fmt.Errorf("td.state %q", r.State)
			}
			return err
		})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		ws, err := fl.c.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.WorkerID == id && w.State != api.WorkerDraining {
				t.Errorf("GET /v2/workers: %s is %s, want %s", id, w.State, api.WorkerDraining)
			}
		}
		if s, err := main.text("#toast"); err != nil || s == "" {
			t.Errorf("no result of the drain in #toast (%q, %v)", s, err)
		}
		main.screenshot(t, shots, "overview-drained")
	})

	t.Run("dark", func(t *testing.T) {
		// The system's dark theme: the page follows prefers-color-scheme.
		scheme := func(v string) chromedp.Action[chromedp.Void] {
			return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}})
				return err
			})
		}
		main.must(t, "emulating a dark system theme", 10*time.Second, scheme("dark"))
		defer main.do(10*time.Second, scheme("light"))
		for _, page := range []string{"#/overview", "#/playground"} {
			main.show(t, page)
			main.waitFor(t, 10*time.Second, "a dark background and light text on "+page, func() error {
				type lum struct{ Bg, Fg float64 }
				l, err := eval[lum](main, 10*time.Second, `(() => {
					const rgb = (c) => (c.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
					const y = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
					const s = getComputedStyle(document.body);
					return {Bg: y(rgb(s.backgroundColor)), Fg: y(rgb(s.color))};
				})()`)
				if err == nil && (l.Bg > 0.3 || l.Fg < 0.6) {
					err = fmt.Errorf("body background luminance %.2f, text %.2f: not a dark theme", l.Bg, l.Fg)
				}
				return err
			})
			main.screenshot(t, shots, "dark-"+strings.TrimPrefix(page, "#/"))
		}
	})

	t.Run("console", func(t *testing.T) {
		if c := main.consoleProblems(); len(c) > 0 {
			t.Errorf("the console of the main tab through every page:\n  %s", strings.Join(c, "\n  "))
		}
	})
}

// firstLoadBudget checks what the first load of the page transferred (the
// page, its scripts, styles and images, headers included; the browser's
// cache was empty): at most 300 KB, the budget for an air-gapped
// cluster's dashboard. API answers are data, not the page, and are left out.
func firstLoadBudget(t *testing.T, tb *tab) {
	t.Helper()
	type sizes struct {
		Files    int
		Transfer float64
		Decoded  float64
	}
	s, err := eval[sizes](tb, 10*time.Second, `(() => {
		const es = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
			.filter((e) => e.initiatorType !== "fetch" && e.initiatorType !== "xmlhttprequest");
		return {Files: es.length, Transfer: es.reduce((n, e) => n + e.transferSize, 0),
			Decoded: es.reduce((n, e) => n + e.decodedBodySize, 0)};
	})()`)
	switch {
	case err != nil:
		t.Errorf("measuring the first load: %v", err)
	case s.Files < 3 || s.Transfer <= 0:
		t.Errorf("the first load: %d files, %.0f bytes transferred: not measured", s.Files, s.Transfer)
	case s.Transfer > 300*1024:
		t.Errorf("the first load transferred %.0f bytes (%d files, %.0f decoded), over the 300 KB budget", s.Transfer, s.Files, s.Decoded)
	default:
		t.Logf("the first load: %d files, %.1f KB transferred (%.1f KB decoded)", s.Files, s.Transfer/1024, s.Decoded/1024)
	}
}

// labelled checks that every visible control of the page has an accessible
// name: a label, aria-label(ledby), or (buttons, links) its own text.
func labelled(t *testing.T, tb *tab, where string) {
	t.Helper()
	bare, err := eval[[]string](tb, 10*time.Second, `[...document.querySelectorAll("input, select, textarea, button, a[href]")]
		.filter((e) => e.offsetParent !== null && e.type !== "hidden")
		.filter((e) => !((e.labels && e.labels.length) || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") ||
			e.title || ((e.tagName === "BUTTON" || e.tagName === "A") && e.textContent.trim())))
		.map((e) => e.outerHTML.slice(0, 120))`)
	if err != nil {
		t.Errorf("checking the labels of %s: %v", where, err)
		return
	}
	for _, b := range bare {
		t.Errorf("a control of %s has no label: %s", where, b)
	}
}

// chartNonzero reads #chart-tokens's data-nonzero (0 when not set yet); an
// error when the chart is missing or says why it cannot draw.
func chartNonzero(tb *tab) (int, error) {
	type st struct {
		Found         bool
		Nonzero, Text string
	}
	s, err := eval[st](tb, 10*time.Second, `(() => {
		const c = document.querySelector("#chart-tokens");
		return c ? {Found: true, Nonzero: c.dataset.nonzero || "", Text: c.textContent.trim()} : {Found: false};
	})()`)
	switch {
	case err != nil:
		return 0, err
	case !s.Found:
		return 0, fmt.Errorf("no #chart-tokens")
	case s.Nonzero == "":
		return 0, fmt.Errorf("#chart-tokens has no data-nonzero (it says %q)", s.Text)
	}
	var n int
	if _, err := fmt.Sscan(s.Nonzero, &n); err != nil {
		return 0, fmt.Errorf("#chart-tokens data-nonzero %q: %v", s.Nonzero, err)
	}
	return n, nil
}

// workerCells are the cells of a worker's row of table#workers.
type workerCells struct {
	State, Model, Slots string
}

func workerRow(tb *tab, id string) (workerCells, error) {
	type res struct {
		Found bool
		workerCells
	}
	r, err := eval[res](tb, 10*time.Second, fmt.Sprintf(`(() => {
		const r = document.querySelector("table#workers tbody tr[data-worker-id=" + JSON.stringify(%s) + "]");
		if (!r) return {Found: false};
		const c = (sel) => { const e = r.querySelector(sel); return e ? e.textContent.trim() : ""; };
		return {Found: true, State: c("td.state"), Model: c("td.model"), Slots: c("td.slots")};
	})()`, jsString(id)))
	switch {
	case err != nil:
		return workerCells{}, err
	case !r.Found:
		return workerCells{}, fmt.Errorf("no row for worker %s", id)
	}
	return r.workerCells, nil
}

// playground sends a long reply (4000 tokens, ignore EOS) and clicks stop as
// soon as its first text shows; the task must end cancelled.
func playground(t *testing.T, main *tab, shots string) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	before, err := fl.c.Tasks(ctx, "")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, st := range before {
		known[st.TaskID] = true
	}

	main.show(t, "#/playground")
	main.must(t, "the playground", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("textarea#pg-input")))
	option := fmt.Sprintf(`select#pg-model option[value=%s]`, jsString(modelID))
	main.must(t, "the model in select#pg-model", 15*time.Second, chromedp.WaitReady(chromedp.CSS(option)))
	// Set the form as a person would, with the events a person's input fires.
	if _, err := eval[bool](main, 10*time.Second, fmt.Sprintf(`(() => {
		const set = (sel, prop, v) => {
			const e = document.querySelector(sel);
			e[prop] = v;
			e.dispatchEvent(new Event("input", {bubbles: true}));
			e.dispatchEvent(new Event("change", {bubbles: true}));
		};
		set("select#pg-model", "value", %s);
		set("input#pg-max-tokens", "value", "4000");
		set("input#pg-ignore-eos", "checked", true);
		return true;
	})()`, jsString(modelID))); err != nil {
		t.Fatalf("setting the playground's form: %v", err)
	}
	// In the page, before the send: watch #pg-output for the reply's bubble
	// and click stop as soon as text streams into it (the tiny model is
	// fast: a round trip from here could come after the end). The bubble's
	// text when it appears (a label, say) is its baseline.
	if _, err := eval[bool](main, 10*time.Second, `(() => {
		const out = document.querySelector("#pg-output");
		const stop = document.querySelector("#pg-stop");
		if (!out || !stop) throw new Error("no #pg-output or #pg-stop");
		const before = out.querySelectorAll(".msg.assistant").length;
		window.uitestStopped = new Promise((resolve, reject) => {
			let bubble = null, baseline = "";
			const check = () => {
				const msgs = out.querySelectorAll(".msg.assistant");
				if (msgs.length <= before) return false;
				const last = msgs[msgs.length - 1];
				if (last !== bubble) { bubble = last; baseline = last.textContent; return false; }
				if (last.textContent.length <= baseline.length) return false;
				const disabled = stop.disabled;
				stop.click();
				resolve({Baseline: baseline, Text: last.textContent, StopDisabled: disabled});
				return true;
			};
			const mo = new MutationObserver(() => { if (check()) mo.disconnect(); });
			mo.observe(out, {childList: true, subtree: true, characterData: true});
			setTimeout(() => { mo.disconnect(); reject(new Error("no reply text in 25 s")); }, 25000);
		});
		return true;
	})()`); err != nil {
		t.Fatalf("watching #pg-output: %v", err)
	}
	main.must(t, "typing a message and sending it", 15*time.Second,
		chromedp.SendKeys(chromedp.CSS("textarea#pg-input"), "Tell me a very long story."),
		chromedp.Click(chromedp.CSS("#pg-send")),
	)
	type stopped struct {
		Baseline, Text string
		StopDisabled   bool
	}
	got, err := eval[stopped](main, 30*time.Second, `window.uitestStopped`)
	if err != nil {
		t.Fatalf("waiting for the reply and stopping it: %v\n%s", err, main.describe())
	}
	if got.StopDisabled {
		t.Errorf("#pg-stop was disabled while the reply streamed")
	}
	main.waitFor(t, 10*time.Second, `#pg-status says "stopped"`, func() error {
		s, err := main.text("#pg-status")
		if err == nil && !strings.Contains(strings.ToLower(s), "stopped") {
			err = fmt.Errorf("#pg-status %q", s)
		}
		return err
	})
	main.screenshot(t, shots, "playground")
	labelled(t, main, "the playground")

	// Through the API: the playground's task ended cancelled, before its
	// 4000 tokens.
	var task api.TaskStatus
	err = poll(t.Context(), 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		all, err := fl.c.Tasks(ctx, "")
		if err != nil {
			return err
		}
		var fresh []api.TaskStatus
		for _, st := range all {
			if !known[st.TaskID] {
				fresh = append(fresh, st)
			}
		}
		if len(fresh) != 1 {
			return fmt.Errorf("%d new tasks since the playground's send, want 1", len(fresh))
		}
		task = fresh[0]
		if task.Status != api.TaskCancelled {
			return fmt.Errorf("the playground's task %s is %s", task.TaskID, task.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the playground's task did not end cancelled: %v", err)
	}
	if task.Model != modelID || task.TokensOut < 1 || task.TokensOut >= 4000 {
		t.Errorf("the playground's task: model %q, %d tokens; want %s, some streamed but fewer than 4000", task.Model, task.TokensOut, modelID)
	}
	t.Logf("playground: %q shown when stop was clicked (%q before the reply); task %s cancelled after %d tokens", got.Text, got.Baseline, task.TaskID, task.TokensOut)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
