package api

import (
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"testing"
)

// Every code a daemon uses is in the one table, with the status clients
// expect.
func TestErrorTable(t *testing.T) {
	for code, want := range map[string]int{
		CodeInvalidRequest: 400, CodeContextOverflow: 400, CodeDeadlineUnmet: 400, CodeUnauthorized: 401,
		CodeForbidden: 403, CodeNotFound: 404, CodeModelNotFound: 404, CodeTaskNotFound: 404, CodeWorkerNotFound: 404,
		CodeMethodNotAllowed: 405, CodeConflict: 409, CodeBodyTooLarge: 413, CodeQueueFull: 429, CodeQueueFullDropped: 429,
		CodeAllSlotsBusy: 503, CodeLoading: 503, CodeDraining: 503, CodePoolUnavailable: 503, CodeNoWorkerAvailable: 503,
		CodeUnavailable: 503, CodeWorkerLost: 502, CodeWorkerUnreachable: 502, CodeUnexpectedResponse: 502,
		CodeCancelled: 500, CodeDecodeFailed: 500, CodeInternal: 500, "SOMETHING_NEW": 500,
	} {
		if got := Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
	for _, code := range []string{CodeQueueFull, CodeAllSlotsBusy, CodeWorkerLost, CodePoolUnavailable} {
		if !Retriable(code) || !Errorf(code, "x").Retriable {
			t.Errorf("%s is not retriable", code)
		}
	}
	for _, code := range []string{CodeInvalidRequest, CodeUnauthorized, CodeCancelled, "SCRIPT_CODE"} {
		if Retriable(code) {
			t.Errorf("%s is retriable", code)
		}
	}
	if e := (&Error{Code: "X", Status: http.StatusForbidden}); e.HTTPStatus() != 403 {
		t.Errorf("an override status is not used: %d", e.HTTPStatus())
	}
}

func TestCheckID(t *testing.T) {
	for _, ok := range []string{"a", "w-1", "gpu_a.2", strings.Repeat("x", 128), "..a", "a..b"} {
		if why := CheckID(ok); why != "" {
			t.Errorf("CheckID(%q) = %q", ok, why)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "x/y?z", "a b", "é", strings.Repeat("x", 129), "a\x00", "a\\b", "$(x)", "-x", "--help"} {
		if CheckID(bad) == "" {
			t.Errorf("CheckID(%q) accepted", bad)
		}
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8001":         "http://127.0.0.1:8001",
		"http://h:1/":            "http://h:1",
		" https://h.example/x/ ": "https://h.example/x",
		"http://[::1]:80":        "http://[::1]:80",
		"HTTP://h:1":             "http://h:1",
		"http://h:1/a%2Fb":       "http://h:1/a%2Fb",
	} {
		got, err := BaseURL(in)
		if err != nil || got != want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h", "http://", "http://u:p@h:1", "http://h:1/?q", "http://h:1/#f", "http://h:x", "http://h:1?", strings.Repeat("a", 1100)} {
		if got, err := BaseURL(bad); err == nil {
			t.Errorf("BaseURL(%q) = %q, accepted", bad, got)
		}
	}
}

// FuzzBaseURL: never a panic; what it accepts it accepts again unchanged.
func FuzzBaseURL(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8001", "http://h:1/", "https://[::1]:9/a", "http://u@h", "ftp://x", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := BaseURL(s)
		if err != nil {
			return
		}
		again, err := BaseURL(u)
		if err != nil || again != u {
			t.Fatalf("BaseURL(%q) = %q, then %q, %v", s, u, again, err)
		}
	})
}

// FuzzRegistration: any body is a valid registration or INVALID_REQUEST;
// a valid one has an id by the rule and a normalized URL.
func FuzzRegistration(f *testing.F) {
	f.Add([]byte(`{"worker_id":"w1","url":"127.0.0.1:8001","model":{"id":"m","ctx":4096},"slots":4,"pool":"p","labels":{"gpu":"a100"}}`))
	f.Add([]byte(`{"worker_id":"x/y?z","url":"http://h:1","model":{"id":"m"},"slots":1}`))
	f.Add([]byte(`{"worker_id":"w","url":"ftp://h","model":{"id":".."},"slots":99999,"backend":"\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r WorkerRegistration
		if json.Unmarshal(body, &r) != nil {
			return
		}
		if e := r.Validate(); e != nil {
			if e.Code != CodeInvalidRequest || len(e.Fields) == 0 {
				t.Fatalf("error %+v", e)
			}
			return
		}
		if CheckID(r.WorkerID) != "" || CheckID(r.Model.ID) != "" || r.Slots < 1 || r.Slots > MaxSlots {
			t.Fatalf("accepted %+v", r)
		}
		if u, err := BaseURL(r.URL); err != nil || u != r.URL {
			t.Fatalf("URL %q not normalized: %q, %v", r.URL, u, err)
		}
	})
}

// FuzzHeartbeat: never a panic; accepted numbers are in range.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte(`{"status":"ready","slots_busy":1,"slots_total":4,"tokens_per_second":12.5}`))
	f.Add([]byte(`{"status":"sleeping","slots_busy":-1,"tokens_per_second":1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var h Heartbeat
		if json.Unmarshal(body, &h) != nil {
			return
		}
		if h.Validate() == nil && (h.SlotsBusy < 0 || h.SlotsTotal > MaxSlots || !(h.TokensPerSecond >= 0)) {
			t.Fatalf("accepted %+v", h)
		}
	})
}

// FuzzPool: never a panic; an accepted pool has a name by the id rule.
func FuzzPool(f *testing.F) {
	f.Add([]byte(`{"name":"gpu-a","host":"gpu-a.lan","llorch_path":"/usr/local/bin/llorch"}`))
	f.Add([]byte(`{"name":"a/b","host":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var p Pool
		if json.Unmarshal(body, &p) != nil {
			return
		}
		if p.Validate() != nil {
			return
		}
		ssh := p.Transport == TransportSSH && p.Host != "" && !strings.HasPrefix(p.Host, "-") && !strings.ContainsAny(p.Host, " \t")
		local := p.Transport == TransportLocal && p.Host == ""
		if CheckID(p.Name) != "" || !ssh && !local || p.LlorchPath != "" && !strings.HasPrefix(path.Base(p.LlorchPath), "llorch") ||
			strings.HasPrefix(p.PoolDir, "-") {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func TestPoolValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Pool
		ok bool
	}{
		{Pool{Name: "a", Host: "gpu-a.lan"}, true},
		{Pool{Name: "a", Transport: "local", PoolDir: "/var/lib/llorch"}, true},
		{Pool{Name: "a", Host: "ops@10.0.0.1:2222", LlorchPath: "~/.local/bin/llorch"}, true},
		{Pool{Name: "a", Host: "h", LlorchPath: "/opt/llorch-cuda"}, true},
		{Pool{Name: "a"}, true}, // local
		{Pool{Name: "a", Transport: "local", Host: "h"}, false},
		{Pool{Name: "a", Transport: "ftp", Host: "h"}, false},
		{Pool{Name: "a", Host: "-oProxyCommand=sh"}, false},
		{Pool{Name: "a", Host: "h x"}, false},
		{Pool{Name: "a", Host: "h", LlorchPath: "~/.bashrc"}, false},
		{Pool{Name: "a", Host: "h", LlorchPath: "/bin/sh"}, false},
		{Pool{Name: "a", Host: "h", LlorchPath: "/usr/bin/llorch/"}, false},
		{Pool{Name: "a", Host: "h", PoolDir: "--help"}, false},
		{Pool{Name: "a", Host: "h", WorkerHost: "10.0.0.12"}, true},
		{Pool{Name: "a", Host: "h", WorkerHost: "::"}, true},
		{Pool{Name: "a", Host: "h", WorkerHost: "gpu-a.lan"}, true},
		{Pool{Name: "a", Host: "h", WorkerHost: "-h"}, false},
		{Pool{Name: "a", Host: "h", WorkerHost: "a b"}, false},
		{Pool{Name: "a", Host: "h", WorkerHost: "h:80"}, false},
		{Pool{Name: "../a", Host: "h"}, false},
		{Pool{Name: "a", Host: "h", Labels: map[string]string{"a b": "c"}}, false},
	} {
		if e := tc.p.Validate(); (e == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.p, e, tc.ok)
		}
	}
}

// FuzzDecodeEvent: the stream events the orchestrator reads from workers;
// what decodes encodes and decodes again to the same event.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range [][2]string{
		{EventStarted, `{"job_id":"j","model":"m","worker_id":"w","seed":1,"slot":0,"max_tokens":9}`},
		{EventToken, `{"t":"Hel","i":0,"id":42}`},
		{EventEnd, `{"tokens_out":3,"stop_reason":"EOS"}`},
		{EventError, `{"code":"CANCELLED","message":"x","retriable":false}`},
		{EventQueued, `{"position":2,"predicted_start_ms":-1}`},
		{"metrics", `{}`},
		{EventToken, `{"t":1}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		ev, err := DecodeEvent(name, data)
		if ev.Name != name {
			t.Fatalf("name %q, want %q", ev.Name, name)
		}
		p := ev.Payload()
		if err != nil || p == nil {
			if err != nil && p != nil {
				t.Fatalf("an error with a payload: %v", err)
			}
			return
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeEvent(name, enc)
		if err != nil {
			t.Fatalf("round trip %s: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again.Payload()); string(enc2) != string(enc) {
			t.Fatalf("round trip %s became %s", enc, enc2)
		}
	})
}
