package orchestrator

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// FuzzDecodeTask: any body gives a valid task or an INVALID_REQUEST error,
// never a panic, and a valid task survives a JSON round trip.
func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"model":"m","prompt":"hi","priority":"batch","placement":{"pin_pool":"p"},"deadline_ms":5}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"session_id":"s","labels":{"a":"b"}}`))
	f.Add([]byte(`{"model":"","prompt":"","priority":"urgent","job_id":"x"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := decodeTask(body)
		if e != nil {
			if e.Code != api.CodeInvalidRequest || req != nil {
				t.Fatalf("error %+v with request %v", e, req)
			}
			return
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, e := decodeTask(data)
		if e != nil || again.Model != req.Model || again.PriorityOrDefault() != req.PriorityOrDefault() {
			t.Fatalf("round trip: %+v, %v", again, e)
		}
	})
}

// FuzzLastEventID: a Last-Event-ID is a decimal id no larger than the
// stream's last event, or a 400; never a panic.
func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0", "5", "18446744073709551615", "-1", "1e3", "00001", " 7"} {
		f.Add(s, uint64(5))
	}
	f.Fuzz(func(t *testing.T, s string, last uint64) {
		n, e := parseLastEventID(s, last)
		if e != nil {
			if e.HTTPStatus() != 400 || n != 0 {
				t.Fatalf("%q: %d, %+v", s, n, e)
			}
			return
		}
		if n > last || (s != "" && strconv.FormatUint(n, 10) != strings.TrimLeft(s, "0") && n != 0) {
			t.Fatalf("%q (last %d) gave %d", s, last, n)
		}
	})
}

// FuzzParseKeys: a key file parses into valid keys or an error that names a
// line and never a key.
func FuzzParseKeys(f *testing.F) {
	f.Add("# keys\nsk-aaaaaaaaaaaa admin ops\nsk-bbbbbbbbbbbb\n\nsk-cccccccccccc user app\n")
	f.Add("sk-dddddddddddd root\n")
	f.Add("short\n")
	f.Add("sk-eeeeeeeeeeee user a b c\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := ParseKeys(text)
		if err != nil {
			for _, line := range strings.Split(text, "\n") {
				if f := strings.Fields(line); len(f) > 0 && len(f[0]) >= 8 && strings.Contains(err.Error(), f[0]) {
					t.Fatalf("the error shows a key: %v", err)
				}
			}
			return
		}
		for _, k := range keys {
			if checkSecret(k.Secret) != nil || (k.Role != RoleUser && k.Role != RoleAdmin) {
				t.Fatalf("accepted %+v", k)
			}
		}
	})
}

// FuzzBearer: the token of any Authorization header, never a panic; only
// "Bearer <token>" (any case) gives one.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Basic abc", "Bearer", "", "BEARER x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("Authorization", v)
		got := bearer(h)
		if got != nil && !strings.EqualFold(h.Get("Authorization")[:7], "bearer ") {
			t.Fatalf("%q gave a token", v)
		}
		if strings.TrimSpace(string(got)) != string(got) {
			t.Fatalf("%q gave %q with spaces around", v, got)
		}
	})
}

// FuzzWorkerStream: whatever a worker's /execute stream holds, the task's
// log stays valid: one started at most, tokens numbered from 0 without a
// gap, at most one terminal event and nothing after it; never a panic.
func FuzzWorkerStream(f *testing.F) {
	f.Add([]byte("event: started\ndata: {\"job_id\":\"j\"}\n\nevent: token\ndata: {\"t\":\"a\",\"i\":0,\"id\":5}\n\nevent: end\ndata: {\"tokens_out\":1}\n\n"))
	f.Add([]byte("event: token\ndata: {\"t\":\"a\",\"i\":3}\n\n"))
	f.Add([]byte("event: error\ndata: {\"code\":\"DECODE_FAILED\",\"retriable\":true}\n\n"))
	f.Add([]byte("event: end\ndata: {\"stop_sequence_matched\":\"\\u001b[31m\"}\n\nevent: token\ndata: {\"t\":\"late\",\"i\":0}\n\n"))
	f.Add([]byte(": ping\n\nevent: started\ndata: [\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg := Config{}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ts := newTasks(&cfg, slog.New(slog.DiscardHandler), nil, newMetrics())
		req := &api.TaskRequest{Model: "m", ExecuteRequest: api.ExecuteRequest{Prompt: "p", Seed: ptr(int64(1)), Stop: []string{"x"}}}
		tk := newTask("t-1", req, false, principal{}, "", time.Now())
		ts.table[tk.id] = tk
		_, job, ok := ts.begin(tk.id, "w", nil, spent{})
		if !ok {
			t.Fatal("begin")
		}
		r := sse.NewReader(bytes.NewReader(body))
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			dec, err := api.DecodeEvent(ev.Event, ev.Data)
			if err != nil {
				break // the attempt fails
			}
			done, _, err := ts.relay(tk.id, job, dec)
			if err != nil || done {
				break
			}
		}
		started, next, terminal := 0, 0, false
		for _, le := range tk.log {
			if terminal {
				t.Fatalf("an event after the terminal one: %+v", le.ev)
			}
			switch {
			case le.ev.Started != nil:
				started++
			case le.ev.Token != nil:
				if le.ev.Token.I != next {
					t.Fatalf("token %d where %d was due", le.ev.Token.I, next)
				}
				next++
			case le.ev.Terminal():
				terminal = true
				if e := le.ev.Error; e != nil && (len(e.Message) > 400 || strings.ContainsAny(e.Code, "\x00\x1b")) {
					t.Fatalf("unsanitized error %+v", e)
				}
				if end := le.ev.End; end != nil && end.StopSequenceMatched != "" && end.StopSequenceMatched != "x" {
					t.Fatalf("a stop sequence the request did not have: %q", end.StopSequenceMatched)
				}
			}
		}
		if started > 1 || next != tk.tokensOut {
			t.Fatalf("%d started, %d tokens, tokens_out %d", started, next, tk.tokensOut)
		}
	})
}
