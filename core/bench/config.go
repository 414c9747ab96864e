package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
)

// APIs and OpenAI endpoints a run can drive.
const (
	APIOpenAI = "openai"
	APILlorch = "llorch"

	EndpointCompletions = "completions"
	EndpointChat        = "chat"
)

// Bounds on what a run accepts (STYLE 8c: numbers from outside are checked
// at the door).
const (
	MaxLength      = 1_000_000 // tokens of a prompt or a generation
	MaxConcurrency = 4096
	MaxRate        = 100_000 // requests/s
	MaxRequests    = 10_000_000
	MaxWarmup      = 100_000
	MaxSessions    = 100_000
	MaxTurns       = 10_000
	MaxSteps       = 64
	MaxDuration    = 7 * 24 * time.Hour
	// DefaultMaxInFlight bounds the requests an open loop or a trace replay
	// has in flight; an arrival beyond it is not sent and counts as the
	// client-side error "0 inflight-limit".
	DefaultMaxInFlight = 1024
	// DefaultTokensPerWord and a zero overhead size prompts when the server
	// reports no prompt tokens.
	DefaultTokensPerWord = 1.3
)

// Config is one run. Lengths are in tokens; zero values of the optional
// fields mean "none" or the documented default.
type Config struct {
	URL string
	// API is APIOpenAI or APILlorch (POST /v2/tasks, native events).
	API string
	// Endpoint is EndpointCompletions or EndpointChat (API openai only).
	Endpoint string
	// Model is sent with every request; empty: the first of GET /v1/models
	// where the server lists one.
	Model  string
	APIKey string

	PromptTokens, GenTokens Lengths
	// SharedPrefix tokens open every prompt (a system prompt in chat).
	SharedPrefix int
	// Sessions conversations of Turns turns each (chat or llorch): a turn
	// sends the conversation so far, its answers included, and a new user
	// message. Closed loop only.
	Sessions, Turns int
	// PrefixPerSession gives each session a system prompt of its own,
	// SharedPrefix tokens long, instead of one all sessions share (prompts
	// of two conversations then share nothing but the chat template's).
	PrefixPerSession bool
	// Trace, when set, is replayed instead of generated requests: arrival
	// gaps kept (divided by TraceSpeed), lengths from each record. TraceName
	// names it in the report.
	Trace      []api.TraceRecord
	TraceName  string
	TraceSpeed float64

	// Concurrency values sweep a closed loop; Rates (requests/s) sweep an
	// open loop with Poisson arrivals. One of the two (neither with a trace).
	Concurrency []int
	Rates       []float64
	// Requests and Duration bound each step (0: unbounded). No new request
	// starts once either is reached; requests in flight finish. With both 0
	// a step sends 4×concurrency requests (at least 8), or 32 at a rate.
	Requests int
	Duration time.Duration
	// Warmup requests run before each step at its load and are left out of
	// its figures.
	Warmup int
	// Timeout bounds the whole run, calibration included.
	Timeout time.Duration
	// MaxInFlight bounds an open loop's or a trace's requests in flight (0:
	// DefaultMaxInFlight).
	MaxInFlight int

	IgnoreEOS bool
	// Seed makes the requests: lengths, text, arrivals, and the sampling
	// seed sent to the server.
	Seed uint64
	SLO  SLO

	// Label and Command go into the report as they are.
	Label   string
	Command []string
	// HTTPClient sends the requests (nil: a client with a connection pool
	// sized for the run and no overall timeout).
	HTTPClient *http.Client
	// OnRequest, when set, is called with every measured request's result
	// as it ends (from one goroutine at a time; warm-up requests left out).
	OnRequest func(Result)
}

// Result is one measured request, as Config.OnRequest sees it.
type Result struct {
	// Step is the step's index in the report (from 0). Session and Turn
	// number a session's conversation in its step and the turn in it (from
	// 0); both are 0 outside sessions.
	Step, Session, Turn int
	// TTFT and E2E as the step's figures measure them (TTFT 0 when no
	// token came).
	TTFT, E2E time.Duration
	// OutputTokens as the step counts them; PromptTokens and CachedTokens
	// as the server reported them (HasPrompt: it did).
	OutputTokens, PromptTokens, CachedTokens int
	HasPrompt                                bool
	// Text is the generated text.
	Text string
	// Err is "" for a request that ended normally, else its error key
	// ("STATUS CODE") and message.
	Err, ErrMessage string
}

// Validate checks every field and returns all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := api.BaseURL(c.URL); err != nil {
		bad("url %q: %v", c.URL, err)
	}
	switch c.API {
	case APIOpenAI:
		if c.Endpoint != EndpointCompletions && c.Endpoint != EndpointChat {
			bad("endpoint must be %s or %s, got %q", EndpointCompletions, EndpointChat, c.Endpoint)
		}
	case APILlorch:
	default:
		bad("api must be %s or %s, got %q", APIOpenAI, APILlorch, c.API)
	}
	if len(c.Model) > api.MaxModelLength {
		bad("model longer than %d bytes", api.MaxModelLength)
	}
	if c.PromptTokens.Kind == "" || c.GenTokens.Kind == "" {
		bad("prompt and generation lengths are required")
	}
	if c.SharedPrefix < 0 || c.SharedPrefix > MaxLength {
		bad("shared prefix must be 0..%d tokens, got %d", MaxLength, c.SharedPrefix)
	} else if c.SharedPrefix > 0 && c.PromptTokens.Kind == "fixed" && c.SharedPrefix >= c.PromptTokens.A {
		bad("shared prefix (%d tokens) must be shorter than the prompt (%d)", c.SharedPrefix, c.PromptTokens.A)
	}
	if c.Sessions < 0 || c.Sessions > MaxSessions {
		bad("sessions must be 0..%d, got %d", MaxSessions, c.Sessions)
	}
	if c.Sessions > 0 {
		if c.Turns < 1 || c.Turns > MaxTurns {
			bad("turns must be 1..%d with sessions, got %d", MaxTurns, c.Turns)
		}
		if c.API == APIOpenAI && c.Endpoint != EndpointChat {
			bad("sessions need the chat endpoint (or the llorch API)")
		}
		if len(c.Rates) > 0 || c.Trace != nil {
			bad("sessions run in a closed loop: give --concurrency, not --rate or --trace")
		}
	} else if c.Turns != 0 {
		bad("turns without sessions")
	}
	if c.PrefixPerSession && (c.Sessions == 0 || c.SharedPrefix == 0) {
		bad("a prefix per session needs sessions and a shared prefix length")
	}
	switch {
	case c.Trace != nil:
		if len(c.Concurrency) > 0 || len(c.Rates) > 0 {
			bad("a trace sets its own arrivals: no concurrency or rate with it")
		}
		if len(c.Trace) == 0 {
			bad("the trace has no records")
		}
		if c.TraceSpeed <= 0 || c.TraceSpeed > 1e6 || math.IsNaN(c.TraceSpeed) {
			bad("trace speed must be in (0, 1e6], got %v", c.TraceSpeed)
		}
	case len(c.Concurrency) > 0 && len(c.Rates) > 0:
		bad("give concurrency or rate, not both")
	case len(c.Concurrency)+len(c.Rates) == 0:
		bad("give a concurrency, a rate or a trace")
	case len(c.Concurrency)+len(c.Rates) > MaxSteps:
		bad("at most %d steps", MaxSteps)
	}
	for _, k := range c.Concurrency {
		if k < 1 || k > MaxConcurrency {
			bad("concurrency must be 1..%d, got %d", MaxConcurrency, k)
		}
	}
	for _, r := range c.Rates {
		if !(r > 0 && r <= MaxRate) {
			bad("rate must be in (0, %d] requests/s, got %v", MaxRate, r)
		}
	}
	if c.Requests < 0 || c.Requests > MaxRequests {
		bad("requests must be 0..%d, got %d", MaxRequests, c.Requests)
	}
	if c.Duration < 0 || c.Duration > MaxDuration {
		bad("duration must be 0..%s, got %s", MaxDuration, c.Duration)
	}
	if c.Warmup < 0 || c.Warmup > MaxWarmup {
		bad("warmup must be 0..%d, got %d", MaxWarmup, c.Warmup)
	}
	if c.Timeout <= 0 || c.Timeout > MaxDuration {
		bad("timeout must be in (0, %s], got %s", MaxDuration, c.Timeout)
	}
	if c.MaxInFlight < 0 || c.MaxInFlight > 1_000_000 {
		bad("max in flight must be 0..1000000, got %d", c.MaxInFlight)
	}
	for _, v := range []float64{c.SLO.TTFTMs, c.SLO.ITLMs, c.SLO.E2EMs} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad("SLO bounds must be non-negative, got %v", v)
		}
	}
	return errors.Join(errs...)
}

// Lengths is a length in tokens, fixed or drawn from a distribution:
// "256", "uniform:128:512" (A..B inclusive), "normal:256:64" (mean A,
// standard deviation B). Draws are clamped to 1..MaxLength.
type Lengths struct {
	Kind string // fixed, uniform or normal
	A, B int
}

// ParseLengths reads a length as the command line writes it.
func ParseLengths(s string) (Lengths, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	num := func(p, what string, lo int) (int, error) {
		n, err := strconv.Atoi(p)
		if err != nil || n < lo || n > MaxLength {
			return 0, fmt.Errorf("%s in %q must be an integer in %d..%d", what, s, lo, MaxLength)
		}
		return n, nil
	}
	switch {
	case len(parts) == 1:
		n, err := num(parts[0], "the length", 1)
		return Lengths{Kind: "fixed", A: n}, err
	case len(parts) == 3 && parts[0] == "uniform":
		a, err := num(parts[1], "the minimum", 1)
		if err != nil {
			return Lengths{}, err
		}
		b, err := num(parts[2], "the maximum", a)
		return Lengths{Kind: "uniform", A: a, B: b}, err
	case len(parts) == 3 && parts[0] == "normal":
		a, err := num(parts[1], "the mean", 1)
		if err != nil {
			return Lengths{}, err
		}
		b, err := num(parts[2], "the standard deviation", 0)
		return Lengths{Kind: "normal", A: a, B: b}, err
	}
	return Lengths{}, fmt.Errorf("length %q: want N, uniform:MIN:MAX or normal:MEAN:SD", s)
}

// String writes l as ParseLengths reads it.
func (l Lengths) String() string {
	switch l.Kind {
	case "uniform", "normal":
		return fmt.Sprintf("%s:%d:%d", l.Kind, l.A, l.B)
	case "fixed":
		return strconv.Itoa(l.A)
	}
	return ""
}

// Draw returns one length.
func (l Lengths) Draw(rng *rand.Rand) int {
	var n int
	switch l.Kind {
	case "uniform":
		n = l.A + rng.IntN(l.B-l.A+1)
	case "normal":
		n = int(math.Round(float64(l.A) + rng.NormFloat64()*float64(l.B)))
	default:
		n = l.A
	}
	return min(max(n, 1), MaxLength)
}

// ParseConcurrency reads a sweep of concurrency values: "1,4,8".
func ParseConcurrency(s string) ([]int, error) {
	var out []int
	for p := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > MaxConcurrency {
			return nil, fmt.Errorf("concurrency %q: each value must be an integer in 1..%d", s, MaxConcurrency)
		}
		out = append(out, n)
	}
	if len(out) > MaxSteps {
		return nil, fmt.Errorf("concurrency %q: at most %d values", s, MaxSteps)
	}
	return out, nil
}

// ParseRates reads a sweep of request rates: "2/s,5/s" (or "2,5"; "/m" for
// per minute).
func ParseRates(s string) ([]float64, error) {
	var out []float64
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		unit := 1.0
		switch {
		case strings.HasSuffix(p, "/s"):
			p = strings.TrimSuffix(p, "/s")
		case strings.HasSuffix(p, "/m"):
			p, unit = strings.TrimSuffix(p, "/m"), 60
		}
		r, err := strconv.ParseFloat(p, 64)
		if err != nil || !(r > 0) || math.IsInf(r, 0) || r/unit > MaxRate {
			return nil, fmt.Errorf("rate %q: each value must be a positive number of requests per second up to %d (\"2/s\", \"30/m\")", s, MaxRate)
		}
		out = append(out, r/unit)
	}
	if len(out) > MaxSteps {
		return nil, fmt.Errorf("rate %q: at most %d values", s, MaxSteps)
	}
	return out, nil
}
