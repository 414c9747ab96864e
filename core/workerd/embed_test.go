package workerd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

// startEmbedWorker serves an embedding worker on the tiny model (mean
// pooling: the model names none) and waits until it is ready.
func startEmbedWorker(t testing.TB, tweak func(*workerd.Config)) string {
	t.Helper()
	w := startWorker(t, func(c *workerd.Config) {
		c.Embedding, c.Slots, c.Ctx, c.DrainGrace = true, 4, 256, 10*time.Second
		if tweak != nil {
			tweak(c)
		}
	})
	if h, err := w.client.Health(context.Background()); err != nil || !h.Model.Embedding {
		t.Fatalf("an embedding worker's health does not say embedding: %+v %v", h, err)
	}
	return w.url
}

type embedAnswer struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
	} `json:"error"`
}

// postJSON posts body to url+path and decodes the answer.
func postJSON(t testing.TB, url, path string, body any) (int, embedAnswer) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	status, _, raw := post(t, url+path, "", string(b))
	var a embedAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: %v: %s", path, err, raw)
	}
	return status, a
}

// vectors checks an embeddings answer's shape and returns its vectors.
func vectors(t testing.TB, a embedAnswer, n int) [][]float32 {
	t.Helper()
	if a.Object != "list" || a.Model != "tiny" || len(a.Data) != n {
		t.Fatalf("answer object %q model %q with %d vectors, want a list of %d from tiny", a.Object, a.Model, len(a.Data), n)
	}
	if a.Usage.PromptTokens < n || a.Usage.TotalTokens != a.Usage.PromptTokens {
		t.Fatalf("usage %+v", a.Usage)
	}
	out := make([][]float32, n)
	for i, d := range a.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Fatalf("data[%d]: object %q index %d", i, d.Object, d.Index)
		}
		var s string
		if json.Unmarshal(d.Embedding, &s) == nil {
			buf, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(buf)%4 != 0 {
				t.Fatalf("data[%d]: bad base64 (%v)", i, err)
			}
			for j := 0; j < len(buf); j += 4 {
				out[i] = append(out[i], math.Float32frombits(binary.LittleEndian.Uint32(buf[j:])))
			}
		} else if err := json.Unmarshal(d.Embedding, &out[i]); err != nil {
			t.Fatalf("data[%d]: %v", i, err)
		}
	}
	return out
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestEmbeddings(t *testing.T) {
	url := startEmbedWorker(t, nil)

	t.Run("two inputs", func(t *testing.T) {
		code, a := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": []string{"the sea is wide", "a cat on a mat"}, "user": "u1"})
		if code != http.StatusOK {
			t.Fatalf("status %d: %+v", code, a.Error)
		}
		vs := vectors(t, a, 2)
		for i, v := range vs {
			if len(v) != 64 {
				t.Fatalf("vector %d has %d values, want n_embd 64", i, len(v))
			}
			if n := norm(v); math.Abs(n-1) > 1e-5 {
				t.Errorf("vector %d has norm %g", i, n)
			}
		}
		if maxAbsDiff(vs[0], vs[1]) < 1e-4 {
			t.Error("different inputs got the same vector")
		}
	})

	t.Run("identical inputs", func(t *testing.T) {
		_, a := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": []string{"same words", "other words", "same words"}})
		vs := vectors(t, a, 3)
		if d := maxAbsDiff(vs[0], vs[2]); d != 0 {
			t.Errorf("identical inputs differ by %g", d)
		}
		_, b := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": "same words"})
		if d := maxAbsDiff(vs[0], vectors(t, b, 1)[0]); d > 1e-5 {
			t.Errorf("the same input in another request differs by %g", d)
		}
	})

	t.Run("batched equals one by one", func(t *testing.T) {
		var in []string
		for i := range 40 { // more than one decode's sequences would be fine too; 40 fit one
			in = append(in, fmt.Sprintf("input number %d says %s", i, strings.Repeat("la ", i%7)))
		}
		_, a := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": in})
		batched := vectors(t, a, len(in))
		for i, s := range in {
			_, b := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": s})
			if d := maxAbsDiff(batched[i], vectors(t, b, 1)[0]); d > 1e-5 {
				t.Errorf("input %d: batched differs from alone by %g", i, d)
			}
		}
	})

	t.Run("base64", func(t *testing.T) {
		in := []string{"floats please", "and more floats"}
		_, f := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": in, "encoding_format": "float"})
		_, b := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": in, "encoding_format": "base64"})
		if !bytes.HasPrefix(b.Data[0].Embedding, []byte(`"`)) {
			t.Fatalf("base64 answer holds %s", b.Data[0].Embedding[:min(20, len(b.Data[0].Embedding))])
		}
		fv, bv := vectors(t, f, 2), vectors(t, b, 2)
		for i := range fv {
			if d := maxAbsDiff(fv[i], bv[i]); d != 0 {
				t.Errorf("vector %d: base64 differs from float by %g", i, d)
			}
		}
	})

	t.Run("token ids", func(t *testing.T) {
		_, a := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": [][]int{{10, 20, 30}, {40, 50}}})
		vs := vectors(t, a, 2)
		_, b := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": []int{10, 20, 30}})
		if d := maxAbsDiff(vs[0], vectors(t, b, 1)[0]); d > 1e-5 {
			t.Errorf("one token array differs from the same in a list by %g", d)
		}
		if a.Usage.PromptTokens != 5 {
			t.Errorf("prompt_tokens %d, want 5", a.Usage.PromptTokens)
		}
	})

	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		param  string
		in     string // the message contains
	}{
		{"dimensions refused", map[string]any{"model": "tiny", "input": "x", "dimensions": 32}, 400, "dimensions", "64"},
		{"too long", map[string]any{"model": "tiny", "input": strings.Repeat("word ", 400)}, 400, "", "at most 256 tokens"},
		{"empty string", map[string]any{"model": "tiny", "input": ""}, 400, "input", "empty"},
		{"empty list", map[string]any{"model": "tiny", "input": []string{}}, 400, "input", "empty"},
		{"no input", map[string]any{"model": "tiny"}, 400, "input", "input"},
		{"bad input type", map[string]any{"model": "tiny", "input": 5}, 400, "input", "expected"},
		{"token out of vocab", map[string]any{"model": "tiny", "input": []int{1, 100000}}, 400, "input", "vocabulary"},
		{"bad encoding", map[string]any{"model": "tiny", "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "base64"},
		{"other model", map[string]any{"model": "other", "input": "x"}, 404, "", "tiny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, a := postJSON(t, url, "/v1/embeddings", tc.body)
			if code != tc.status || a.Error == nil {
				t.Fatalf("status %d error %+v, want %d", code, a.Error, tc.status)
			}
			if tc.param != "" && (a.Error.Param == nil || *a.Error.Param != tc.param) {
				t.Errorf("param %v, want %s", a.Error.Param, tc.param)
			}
			if !strings.Contains(a.Error.Message, tc.in) {
				t.Errorf("message %q does not say %q", a.Error.Message, tc.in)
			}
		})
	}

	t.Run("dimensions equal to the size", func(t *testing.T) {
		code, a := postJSON(t, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": "x", "dimensions": 64})
		if code != http.StatusOK {
			t.Fatalf("status %d: %+v", code, a.Error)
		}
		vectors(t, a, 1)
	})

	t.Run("no generation", func(t *testing.T) {
		code, a := postJSON(t, url, "/v1/chat/completions", map[string]any{"model": "tiny",
			"messages": []map[string]string{{"role": "user", "content": "hi"}}})
		if code != http.StatusBadRequest || a.Error == nil || !strings.Contains(a.Error.Message, "embeddings") {
			t.Fatalf("chat on an embedding worker: status %d %+v", code, a.Error)
		}
		_, err := workerclient.New(url, "", nil).Collect(context.Background(), req("hi", 2, 1))
		if err == nil || !strings.Contains(err.Error(), "embeddings") {
			t.Fatalf("execute on an embedding worker: %v", err)
		}
	})
}

// A generation worker says how to get embeddings.
func TestEmbeddingsOnGenerationWorker(t *testing.T) {
	w := startWorker(t, nil)
	code, a := postJSON(t, w.url, "/v1/embeddings", map[string]any{"model": "tiny", "input": "x"})
	if code != http.StatusBadRequest || a.Error == nil || !strings.Contains(a.Error.Message, "--embedding") {
		t.Fatalf("status %d %+v, want a 400 that names --embedding", code, a.Error)
	}
}

// BenchmarkEmbeddings compares 32 short inputs in one request (one decode)
// with the same inputs one request each, on the tiny model.
func BenchmarkEmbeddings(b *testing.B) {
	url := startEmbedWorker(b, nil)
	in := make([]string, 32)
	for i := range in {
		in[i] = fmt.Sprintf("short input %d about the sea", i)
	}
	b.Run("batched", func(b *testing.B) {
		for b.Loop() {
			if code, a := postJSON(b, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": in}); code != 200 {
				b.Fatalf("status %d %+v", code, a.Error)
			}
		}
		b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "embeddings/s")
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, s := range in {
				if code, a := postJSON(b, url, "/v1/embeddings", map[string]any{"model": "tiny", "input": s}); code != 200 {
					b.Fatalf("status %d %+v", code, a.Error)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "embeddings/s")
	})
}
