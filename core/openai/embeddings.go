package openai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// EmbedBackend computes embeddings: an embedding worker, or the orchestrator
// forwarding to one.
type EmbedBackend interface {
	// Embed returns one vector per input, in order. Errors are *api.Error
	// (the table in errors.go decides the status) or *UpstreamError (shown
	// unchanged).
	Embed(ctx context.Context, req *EmbedRequest) (*EmbedResult, error)
}

// EmbedRequest is a validated POST /embeddings body.
type EmbedRequest struct {
	Model string
	// Input holds 1..MaxEmbedInputs inputs.
	Input []EmbedInput
	// Dimensions is the vector size the client asked for, 0 when it asked
	// none: a backend refuses any size but its model's (no truncation).
	Dimensions int
	User       string
}

// EmbedInput is one input: text, or token ids when the client sent those.
type EmbedInput struct {
	Text   string
	Tokens []int32
}

// EmbedResult is the answer of an EmbedBackend.
type EmbedResult struct {
	Model string
	// Vectors are L2-normalized, one per input.
	Vectors      [][]float32
	PromptTokens int
}

// MaxEmbedInputs is the most inputs one request may carry (OpenAI's limit).
const MaxEmbedInputs = 2048

// RegisterEmbeddings mounts POST /embeddings on g (the group Register uses).
func RegisterEmbeddings(g *echo.Group, b EmbedBackend, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &embedHandler{b: b, log: log.With("component", "openai")}
	g.POST("/embeddings", h.embed)
}

type embedHandler struct {
	b   EmbedBackend
	log *slog.Logger
}

// embeddingsBody is the body of POST /embeddings. Fields not listed are ignored.
type embeddingsBody struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat *string         `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	User           string          `json:"user"`
}

// embedding is one entry of the answer's data; Embedding is []float32 or a
// base64 string of little-endian float32s.
type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type embedUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddingsResponse is OpenAI's answer to POST /embeddings.
type embeddingsResponse struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  embedUsage  `json:"usage"`
}

func (h *embedHandler) embed(c echo.Context) error {
	release(c)
	body, f := readBody(c)
	if f != nil {
		f.write(c.Response())
		return nil
	}
	req, b64, f := parseEmbeddings(body)
	if f != nil {
		f.write(c.Response())
		return nil
	}
	res, err := h.b.Embed(c.Request().Context(), req)
	if err != nil {
		var up *UpstreamError
		if errors.As(err, &up) {
			up.failure().write(c.Response())
			return nil
		}
		f, known := fromError(err, nil)
		if !known {
			h.log.Error("embedding failed", "path", c.Path(), "err", err)
		}
		f.write(c.Response())
		return nil
	}
	if len(res.Vectors) != len(req.Input) {
		h.log.Error("embedding backend answered the wrong number of vectors", "inputs", len(req.Input), "vectors", len(res.Vectors))
		f, _ := fromError(errors.New("wrong vector count"), nil)
		f.write(c.Response())
		return nil
	}
	return c.JSON(http.StatusOK, encodeEmbeddings(res, b64))
}

func encodeEmbeddings(res *EmbedResult, b64 bool) embeddingsResponse {
	out := embeddingsResponse{Object: "list", Model: res.Model, Data: make([]embedding, len(res.Vectors)),
		Usage: embedUsage{PromptTokens: res.PromptTokens, TotalTokens: res.PromptTokens}}
	for i, v := range res.Vectors {
		out.Data[i] = embedding{Object: "embedding", Index: i, Embedding: v}
		if b64 {
			out.Data[i].Embedding = encodeBase64(v)
		}
	}
	return out
}

// encodeBase64 is OpenAI's base64 encoding: the vector's float32s, little-endian.
func encodeBase64(v []float32) string {
	buf := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(buf)
}

func decodeBase64(s string) ([]float32, error) {
	buf, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(buf)%4 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32s", len(buf))
	}
	v := make([]float32, len(buf)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return v, nil
}

// parseEmbeddings decodes and validates a POST /embeddings body; b64 tells
// whether the client wants base64 vectors.
func parseEmbeddings(body []byte) (req *EmbedRequest, b64 bool, f *failure) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, false, invalid("", "", "We could not parse the JSON body of your request: it must be a JSON object.")
	}
	var b embeddingsBody
	if err := json.Unmarshal(body, &b); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, false, invalid(te.Field, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.",
				te.Field, typeName(te.Type.Kind().String()), te.Value)
		}
		return nil, false, invalid("", "", "We could not parse the JSON body of your request: %v.", err)
	}
	if b.Model == "" {
		return nil, false, invalid("model", "", "you must provide a model parameter")
	}
	if len(b.Model) > api.MaxModelLength {
		return nil, false, invalid("model", "", "model must be at most %d characters", api.MaxModelLength)
	}
	if b.EncodingFormat != nil {
		switch *b.EncodingFormat {
		case "float":
		case "base64":
			b64 = true
		default:
			return nil, false, invalid("encoding_format", "invalid_value",
				"Invalid 'encoding_format': must be 'float' or 'base64', got %q.", *b.EncodingFormat)
		}
	}
	req = &EmbedRequest{Model: b.Model, User: b.User}
	if b.Dimensions != nil {
		if *b.Dimensions < 1 {
			return nil, false, invalid("dimensions", "invalid_value", "Invalid 'dimensions': must be at least 1, got %d.", *b.Dimensions)
		}
		req.Dimensions = *b.Dimensions
	}
	in, f := embedInputs(b.Input)
	if f != nil {
		return nil, false, f
	}
	req.Input = in
	return req, b64, nil
}

// embedInputs reads input: a string, an array of strings, an array of token
// ids (one input), or an array of arrays of token ids.
func embedInputs(raw json.RawMessage) ([]EmbedInput, *failure) {
	if isNull(raw) {
		return nil, invalid("input", "", "you must provide an input parameter")
	}
	badType := invalid("input", "invalid_type",
		"Invalid type for 'input': expected a string, an array of strings, an array of token ids or an array of arrays of token ids.")
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, invalid("input", "invalid_value", "Invalid 'input': the string must not be empty.")
		}
		return []EmbedInput{{Text: s}}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, badType
	}
	if len(items) == 0 {
		return nil, invalid("input", "invalid_value", "Invalid 'input': the array must not be empty.")
	}
	if len(items) > MaxEmbedInputs {
		return nil, invalid("input", "invalid_value", "Invalid 'input': at most %d inputs, got %d.", MaxEmbedInputs, len(items))
	}
	if toks, ok := tokenIDs(raw); ok { // one input given as token ids
		return []EmbedInput{{Tokens: toks}}, nil
	}
	out := make([]EmbedInput, len(items))
	for i, it := range items {
		if json.Unmarshal(it, &out[i].Text) == nil {
			if out[i].Text == "" {
				return nil, invalid("input", "invalid_value", "Invalid 'input[%d]': the string must not be empty.", i)
			}
			continue
		}
		toks, ok := tokenIDs(it)
		if !ok {
			return nil, badType
		}
		if len(toks) == 0 {
			return nil, invalid("input", "invalid_value", "Invalid 'input[%d]': the token array must not be empty.", i)
		}
		out[i].Tokens = toks
	}
	return out, nil
}

// tokenIDs reads a non-empty JSON array of non-negative int32s.
func tokenIDs(raw json.RawMessage) ([]int32, bool) {
	var ids []int64
	if json.Unmarshal(raw, &ids) != nil || len(ids) == 0 {
		return nil, false
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		if id < 0 || id > math.MaxInt32 {
			return nil, false
		}
		out[i] = int32(id)
	}
	return out, true
}

// ForwardBody is req as the body of a POST /v1/embeddings to another llorch
// daemon (the orchestrator's to a worker), asking for base64 vectors.
func (r *EmbedRequest) ForwardBody() ([]byte, error) {
	in := make([]any, len(r.Input))
	for i, x := range r.Input {
		if x.Tokens != nil {
			in[i] = x.Tokens
		} else {
			in[i] = x.Text
		}
	}
	b := map[string]any{"model": r.Model, "input": in, "encoding_format": "base64"}
	if r.Dimensions != 0 {
		b["dimensions"] = r.Dimensions
	}
	if r.User != "" {
		b["user"] = r.User
	}
	return json.Marshal(b)
}

// UpstreamError is an error answer from another daemon's /v1/embeddings (a
// worker's, seen by the orchestrator); the handler shows it unchanged.
type UpstreamError struct {
	Status int
	Err    Error
	// RetryAfterMs and ShouldRetry come from its headers (0 and "" when absent).
	RetryAfterMs int64
	ShouldRetry  string
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("openai: upstream answered %d: %s", e.Status, e.Err.Message)
}

func (e *UpstreamError) failure() *failure {
	f := &failure{status: e.Status, err: e.Err, retryAfterMs: e.RetryAfterMs}
	if r, err := strconv.ParseBool(e.ShouldRetry); err == nil {
		f.retriable = &r
	}
	return f
}

// DecodeEmbedResponse reads the answer of a POST /v1/embeddings sent with
// ForwardBody: the result on 200; an *UpstreamError for an error in OpenAI's
// shape; another error for anything else.
func DecodeEmbedResponse(status int, h http.Header, body []byte) (*EmbedResult, error) {
	if status != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == nil || eb.Error.Message == "" {
			return nil, fmt.Errorf("openai: upstream answered %d without an error body", status)
		}
		up := &UpstreamError{Status: status, Err: *eb.Error, ShouldRetry: h.Get("X-Should-Retry")}
		if ms, err := strconv.ParseInt(h.Get("Retry-After-Ms"), 10, 64); err == nil && ms > 0 {
			up.RetryAfterMs = ms
		}
		return nil, up
	}
	var r struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string     `json:"model"`
		Usage embedUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("openai: embeddings answer: %w", err)
	}
	res := &EmbedResult{Model: r.Model, PromptTokens: r.Usage.PromptTokens, Vectors: make([][]float32, len(r.Data))}
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(r.Data) || res.Vectors[d.Index] != nil {
			return nil, fmt.Errorf("openai: embeddings answer: bad index %d", d.Index)
		}
		var v []float32
		var s string
		if err := json.Unmarshal(d.Embedding, &s); err == nil {
			if v, err = decodeBase64(s); err != nil {
				return nil, fmt.Errorf("openai: embeddings answer: index %d: %w", d.Index, err)
			}
		} else if err := json.Unmarshal(d.Embedding, &v); err != nil {
			return nil, fmt.Errorf("openai: embeddings answer: index %d: %w", d.Index, err)
		}
		if v == nil {
			v = []float32{}
		}
		res.Vectors[d.Index] = v
	}
	return res, nil
}
