package openai

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
)

func TestParseEmbeddings(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		inputs     int
		tokens     bool
		b64        bool
		param      string // "" when valid
	}{
		{"string", `{"model":"m","input":"hi"}`, 1, false, false, ""},
		{"strings base64", `{"model":"m","input":["a","b"],"encoding_format":"base64","user":"u"}`, 2, false, true, ""},
		{"token array", `{"model":"m","input":[1,2,3]}`, 1, true, false, ""},
		{"token arrays", `{"model":"m","input":[[1],[2,3]],"dimensions":8}`, 2, true, false, ""},
		{"no model", `{"input":"x"}`, 0, false, false, "model"},
		{"no input", `{"model":"m"}`, 0, false, false, "input"},
		{"empty string", `{"model":"m","input":""}`, 0, false, false, "input"},
		{"empty in list", `{"model":"m","input":["a",""]}`, 0, false, false, "input"},
		{"empty token list", `{"model":"m","input":[[1],[]]}`, 0, false, false, "input"},
		{"negative token", `{"model":"m","input":[-1]}`, 0, false, false, "input"},
		{"mixed", `{"model":"m","input":["a",5]}`, 0, false, false, "input"},
		{"number", `{"model":"m","input":5}`, 0, false, false, "input"},
		{"bad format", `{"model":"m","input":"x","encoding_format":"hex"}`, 0, false, false, "encoding_format"},
		{"zero dimensions", `{"model":"m","input":"x","dimensions":0}`, 0, false, false, "dimensions"},
		{"dimensions not a number", `{"model":"m","input":"x","dimensions":"8"}`, 0, false, false, "dimensions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, b64, f := parseEmbeddings([]byte(tc.body))
			if tc.param != "" {
				if f == nil || f.status != http.StatusBadRequest || f.err.Param == nil || *f.err.Param != tc.param {
					t.Fatalf("failure %+v, want a 400 about %s", f, tc.param)
				}
				return
			}
			if f != nil {
				t.Fatalf("failure %+v", f.err)
			}
			if len(req.Input) != tc.inputs || b64 != tc.b64 || (req.Input[0].Tokens != nil) != tc.tokens {
				t.Fatalf("request %+v base64 %v", req, b64)
			}
		})
	}
}

// What ForwardBody sends and DecodeEmbedResponse reads back is what the
// handler encodes: vectors survive base64 exactly.
func TestEmbedRoundTrip(t *testing.T) {
	res := &EmbedResult{Model: "m", PromptTokens: 3, Vectors: [][]float32{{0.1, -2.5, float32(math.Pi)}, {1e-30, 0, 7}}}
	for _, b64 := range []bool{true, false} {
		body := embedJSON(t, encodeEmbeddings(res, b64))
		got, err := DecodeEmbedResponse(http.StatusOK, nil, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := range res.Vectors {
			for j := range res.Vectors[i] {
				if got.Vectors[i][j] != res.Vectors[i][j] {
					t.Fatalf("base64 %v: [%d][%d] = %v, want %v", b64, i, j, got.Vectors[i][j], res.Vectors[i][j])
				}
			}
		}
	}
	h := http.Header{}
	h.Set("Retry-After-Ms", "1500")
	_, err := DecodeEmbedResponse(http.StatusServiceUnavailable, h, []byte(`{"error":{"message":"busy","type":"server_error","param":null,"code":"all_slots_busy"}}`))
	up, ok := err.(*UpstreamError)
	if !ok || up.Status != 503 || up.Err.Message != "busy" || up.RetryAfterMs != 1500 {
		t.Fatalf("err %#v", err)
	}
}

func FuzzParseEmbeddings(f *testing.F) {
	for _, s := range []string{`{"model":"m","input":"hi"}`, `{"model":"m","input":[[1,2],[3]]}`, `{"model":"m","input":["a","b"],"dimensions":4}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, fl := parseEmbeddings(body)
		if fl != nil {
			if fl.status != http.StatusBadRequest {
				t.Fatalf("status %d", fl.status)
			}
			return
		}
		if req.Model == "" || len(req.Input) == 0 || len(req.Input) > MaxEmbedInputs || req.Dimensions < 0 {
			t.Fatalf("accepted %+v", req)
		}
		for _, in := range req.Input {
			if in.Text == "" && len(in.Tokens) == 0 {
				t.Fatalf("accepted an empty input: %+v", req)
			}
			if _, err := req.ForwardBody(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func embedJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
