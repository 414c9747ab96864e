package workerclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// Embeddings passes the worker's answer on as it came, any status; it sends
// the token, the correlation id and the body; no answer, a broken one and
// one too large are errors of their own.
func TestEmbeddings(t *testing.T) {
	const token = "worker-token-9"
	var gotAuth, gotCorr, gotType, gotBody string
	// One worker per case: /CASE/v1/embeddings.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{case}/v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotAuth, gotCorr, gotType, gotBody = r.Header.Get("Authorization"), r.Header.Get("X-Correlation-Id"), r.Header.Get("Content-Type"), string(b)
		switch r.PathValue("case") {
		case "busy":
			w.Header().Set("Retry-After-Ms", "250")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"message":"all slots busy","type":"server_error","code":"all_slots_busy"}}`)
		case "broken":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"data":`)
		case "huge":
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 64<<10)) // the client's limit is 1 KiB
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"list","data":[],"model":"m"}`)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := WithCorrelationID(context.Background(), "corr-1")
	body := []byte(`{"model":"m","input":["x"]}`)

	t.Run("ok", func(t *testing.T) {
		a, err := New(srv.URL+"/ok", token, nil).Embeddings(ctx, body)
		if err != nil || a.Status != http.StatusOK || string(a.Body) != `{"object":"list","data":[],"model":"m"}` {
			t.Fatalf("answer %+v, err %v", a, err)
		}
		if gotAuth != "Bearer "+token || gotCorr != "corr-1" || gotType != "application/json" || gotBody != string(body) {
			t.Fatalf("the worker got auth %q, correlation %q, type %q, body %q", gotAuth, gotCorr, gotType, gotBody)
		}
	})
	t.Run("an error answer is passed on", func(t *testing.T) {
		a, err := New(srv.URL+"/busy", token, nil).Embeddings(ctx, body)
		if err != nil || a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After-Ms") != "250" ||
			string(a.Body) != `{"error":{"message":"all slots busy","type":"server_error","code":"all_slots_busy"}}` {
			t.Fatalf("answer %+v, err %v", a, err)
		}
	})
	t.Run("broken", func(t *testing.T) {
		_, err := New(srv.URL+"/broken", token, nil).Embeddings(ctx, body)
		if !errors.Is(err, ErrBrokenAnswer) {
			t.Fatalf("err %v, want ErrBrokenAnswer", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		c := New(srv.URL+"/huge", token, nil)
		c.maxAnswer = 1 << 10
		_, err := c.Embeddings(ctx, body)
		if !errors.Is(err, ErrAnswerTooLarge) {
			t.Fatalf("err %v, want ErrAnswerTooLarge", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nobody listens there now
		_, err = New("http://"+addr, token, nil).Embeddings(ctx, body)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 0 || se.Err.Code != api.CodeWorkerUnreachable {
			t.Fatalf("err %v, want a StatusError with status 0", err)
		}
	})
}
