package openai

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
)

// Register mounts POST /chat/completions, POST /completions, GET /models and
// GET /models/{id} on g, a group the daemon created for "/v1" with its own
// middleware (auth) after ShapeErrors.
func Register(g *echo.Group, b Backend, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handlers{b: b, log: log.With("component", "openai")}
	g.POST("/chat/completions", func(c echo.Context) error { return h.generate(c, kindChat) })
	g.POST("/completions", func(c echo.Context) error { return h.generate(c, kindCompletion) })
	g.GET("/models", h.models)
	g.GET("/models/*", h.model)
}

type handlers struct {
	b   Backend
	log *slog.Logger
}

// meta are the fields every object of one response carries.
type meta struct {
	id          string
	created     int64
	model       string
	fingerprint string
}

func newMeta(k kind, model string) meta {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	prefix := "chatcmpl-"
	if k == kindCompletion {
		prefix = "cmpl-"
	}
	return meta{id: prefix + hex.EncodeToString(b), created: time.Now().Unix(), model: model, fingerprint: fingerprint(model)}
}

// fingerprint is OpenAI's system_fingerprint: it changes when the build or the
// model that serves changes.
func fingerprint(model string) string {
	sum := sha256.Sum256([]byte(buildinfo.Version + "\x00" + buildinfo.Commit + "\x00" + model))
	return "fp_" + hex.EncodeToString(sum[:5])
}

func (h *handlers) fail(c echo.Context, f *failure) error {
	f.write(c.Response())
	return nil
}

// failErr answers an error a Backend returned; errors that are not *api.Error
// go to the log.
func (h *handlers) failErr(c echo.Context, err error, rename func(string) string) error {
	f, known := fromError(err, rename)
	if !known {
		h.log.Error("backend failed", "path", c.Path(), "err", err)
	}
	return h.fail(c, f)
}

// readBody reads a body of at most api.MaxRequestBytes.
func readBody(c echo.Context) ([]byte, *failure) {
	r := http.MaxBytesReader(c.Response(), c.Request().Body, api.MaxRequestBytes)
	body, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &failure{status: http.StatusRequestEntityTooLarge, err: Error{
				Message: fmt.Sprintf("Request body exceeds %d bytes.", api.MaxRequestBytes),
				Type:    typeInvalidRequest, Code: strp("body_too_large")}}
		}
		return nil, invalid("", "", "Cannot read the request body: %v.", err)
	}
	return body, nil
}

// finishReason maps a stop reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case api.StopMaxTokens, api.StopContextLimit:
		return "length"
	}
	return "stop" // EOS, STOP_SEQUENCE
}

func usageOf(e *api.End) Usage {
	return Usage{PromptTokens: e.PromptTokens, CompletionTokens: e.TokensOut, TotalTokens: e.PromptTokens + e.TokensOut,
		PromptTokensDetails: &promptDetails{CachedTokens: e.CachedTokens}}
}

func (h *handlers) models(c echo.Context) error {
	release(c)
	ms, err := h.b.Models(c.Request().Context())
	if err != nil {
		return h.failErr(c, err, nil)
	}
	out := modelList{Object: "list", Data: make([]modelObject, 0, len(ms))}
	for _, m := range ms {
		out.Data = append(out.Data, modelOf(m))
	}
	return c.JSON(http.StatusOK, &out)
}

// model answers GET /models/{id}; ids may hold slashes ("org/name").
func (h *handlers) model(c echo.Context) error {
	release(c)
	id, err := url.PathUnescape(c.Param("*"))
	if err != nil {
		id = c.Param("*")
	}
	ms, err := h.b.Models(c.Request().Context())
	if err != nil {
		return h.failErr(c, err, nil)
	}
	for _, m := range ms {
		if m.ID == id {
			return c.JSON(http.StatusOK, modelOf(m))
		}
	}
	return h.fail(c, &failure{status: http.StatusNotFound, err: Error{
		Message: fmt.Sprintf("The model '%s' does not exist or is not served now.", id),
		Type:    typeInvalidRequest, Code: strp("model_not_found")}})
}

func modelOf(m Model) modelObject {
	return modelObject{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: "llorch",
		Llorch: modelStats{Workers: m.Workers, Ready: m.Ready}}
}

// Wire types of responses.

// Usage counts the tokens of a request.
type Usage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	PromptTokensDetails *promptDetails `json:"prompt_tokens_details,omitempty"`
}

type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// optUsage is a usage field that is absent, null, or set.
type optUsage struct {
	set bool // present in the JSON (null when u is nil)
	u   *Usage
}

func (o optUsage) IsZero() bool { return !o.set }

func (o optUsage) MarshalJSON() ([]byte, error) { return json.Marshal(o.u) }

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             *Usage       `json:"usage"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *chatLogprobs  `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
}

type chatMessageOut struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	Refusal   *string        `json:"refusal"`
	ToolCalls []api.ToolCall `json:"tool_calls,omitempty"`
}

// chatLogprobs is a chat choice's logprobs.
type chatLogprobs struct {
	Content []logprobEntry `json:"content"`
	Refusal *struct{}      `json:"refusal"`
}

type logprobEntry struct {
	Token       string     `json:"token"`
	Logprob     float64    `json:"logprob"`
	Bytes       []int      `json:"bytes"`
	TopLogprobs []topEntry `json:"top_logprobs"`
}

type topEntry struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// textLogprobs is a /completions choice's logprobs (the legacy shape).
type textLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type chatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint"`
	Choices           []chunkChoice `json:"choices"`
	Usage             optUsage      `json:"usage,omitzero"`
}

type chunkChoice struct {
	Index        int           `json:"index"`
	Delta        delta         `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

// toolCallDelta is a piece of a streamed tool call: the first of call Index
// carries its id, type and name, the later ones fragments of its arguments.
type toolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function toolFunctionDelta `json:"function"`
}

type toolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// textCompletion is a /completions response, and also one of its stream chunks.
type textCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []textChoice `json:"choices"`
	Usage             optUsage     `json:"usage,omitzero"`
}

type textChoice struct {
	Text         string        `json:"text"`
	Index        int           `json:"index"`
	Logprobs     *textLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

// usageChunk is the last chunk of a stream with stream_options.include_usage.
type usageChunk struct {
	ID                string     `json:"id"`
	Object            string     `json:"object"`
	Created           int64      `json:"created"`
	Model             string     `json:"model"`
	SystemFingerprint string     `json:"system_fingerprint"`
	Choices           []struct{} `json:"choices"`
	Usage             *Usage     `json:"usage"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Llorch is an extension: how many workers have the model, and how many
	// can take a request now.
	Llorch modelStats `json:"llorch"`
}

type modelStats struct {
	Workers int `json:"workers"`
	Ready   int `json:"ready"`
}
