package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Report is the result of one `llorch ctl bench` run: what was run against
// what, and one Step per concurrency or rate. It is the JSON that --json
// writes and that plots read; several reports (two servers, say) can be drawn
// on one chart.
type Report struct {
	// Label names the run on charts and in tables (--label; default: the
	// server's host:port and model).
	Label string `json:"label"`
	// Command is the exact command line that produced the report.
	Command []string `json:"command"`
	// Client is the llorch version that measured; Server what the server says
	// it is, where it says (empty otherwise).
	Client  string    `json:"client"`
	Server  string    `json:"server,omitempty"`
	URL     string    `json:"url"`
	API     string    `json:"api"` // openai-chat, openai-completions or llorch
	Model   string    `json:"model"`
	Started time.Time `json:"started"`
	// Workload describes the requests (lengths, sharing, sessions, trace).
	Workload Workload `json:"workload"`
	// Warmup is how many requests ran before each step and were left out of
	// its figures.
	Warmup int `json:"warmup"`
	// SLO is the goodput objective; zero fields are not checked.
	SLO   SLO    `json:"slo"`
	Steps []Step `json:"steps"`
}

// Workload describes the requests a run sends.
type Workload struct {
	// PromptTokens and GenTokens are the requested lengths (a fixed value or
	// a distribution, as given on the command line: "256", "uniform:128:512",
	// "normal:256:64").
	PromptTokens string `json:"prompt_tokens"`
	GenTokens    string `json:"gen_tokens"`
	// SharedPrefix is the length in tokens of a system prompt every request
	// shares (0: none).
	SharedPrefix int `json:"shared_prefix,omitempty"`
	// Sessions and Turns: multi-turn conversations (0: single requests).
	Sessions int `json:"sessions,omitempty"`
	Turns    int `json:"turns,omitempty"`
	// Trace is the replayed trace file, if any.
	Trace string `json:"trace,omitempty"`
	// IgnoreEOS asks the server to generate all GenTokens.
	IgnoreEOS bool `json:"ignore_eos"`
	// TokensPerWord is the calibration used to size prompts in words (from
	// the server's usage, or the default when it reports none).
	TokensPerWord float64 `json:"tokens_per_word"`
	// PromptOverhead is the calibration's intercept: the tokens a request
	// has besides its words (chat template, BOS). Calibrated says whether
	// both figures came from the server (false: the defaults).
	PromptOverhead float64 `json:"prompt_overhead"`
	Calibrated     bool    `json:"calibrated"`
	// Seed makes the requests (lengths, text, arrivals): two runs with one
	// seed send the very same requests.
	Seed uint64 `json:"seed"`
	// TraceSpeed scales a replayed trace's clock (2: twice as fast).
	TraceSpeed float64 `json:"trace_speed,omitempty"`
	// Endpoint is where requests went (/v1/completions, /v1/chat/completions
	// or /v2/tasks).
	Endpoint string `json:"endpoint"`
}

// SLO is a goodput objective: a request counts as good when it succeeded and
// met every set bound.
type SLO struct {
	TTFTMs float64 `json:"ttft_ms,omitempty"`
	ITLMs  float64 `json:"itl_ms,omitempty"` // bound on the request's mean inter-token latency
	E2EMs  float64 `json:"e2e_ms,omitempty"`
}

// Step is one load level: a closed loop at Concurrency, or an open loop at
// Rate requests/s. Exactly one of Concurrency and Rate is set (a trace
// replay sets neither and names the trace in the report's workload).
type Step struct {
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	// Requests were sent and measured; OK of them ended normally.
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	// WarmupErrors counts failed warm-up requests (not in Errors).
	WarmupErrors int `json:"warmup_errors,omitempty"`
	// Errors counts failed requests by "STATUS CODE" (an HTTP status and the
	// error code the server gave, "200 CANCELLED" for an error in the
	// stream, "0 connect" for a transport failure).
	Errors map[string]int `json:"errors,omitempty"`
	// ErrorMessages holds the first message of each key of Errors.
	ErrorMessages map[string]string `json:"error_messages,omitempty"`
	// DurationS is the step's measured wall time, first send to last end.
	DurationS float64 `json:"duration_s"`
	// OutputTokens counts generated tokens of successful requests, as
	// counted from the streams; UsageMismatches counts requests whose stream
	// count differed from the server's usage report.
	//
	// A request's count is the server's usage figure where it gave one that
	// the stream bears out (no fewer tokens than token-bearing chunks, no
	// more than max_tokens: a server that holds back an incomplete UTF-8
	// character sends two tokens' text in one chunk), else the stream's
	// count. StreamTokens is the stream's count alone (chunks with text,
	// native token events); UsageOutputTokens the servers' usage figures
	// summed over the requests that reported one, UsageMissing how many did
	// not.
	OutputTokens      int `json:"output_tokens"`
	UsageMismatches   int `json:"usage_mismatches"`
	StreamTokens      int `json:"stream_tokens"`
	UsageOutputTokens int `json:"usage_output_tokens"`
	UsageMissing      int `json:"usage_missing,omitempty"`
	// Short counts successful requests that generated fewer tokens than
	// they asked for: they met an end of generation or a stop (the server
	// did not honor ignore_eos, where it was asked).
	Short int `json:"short,omitempty"`
	// Mean prompt and cached tokens per successful request, where the server
	// reports them (0 otherwise).
	PromptTokens float64 `json:"prompt_tokens"`
	CachedTokens float64 `json:"cached_tokens"`
	// Throughput: output tokens/s and requests/s over DurationS.
	OutputTokPerS float64 `json:"output_tokens_per_s"`
	ReqPerS       float64 `json:"requests_per_s"`
	// Goodput is requests/s that met the SLO; GoodFraction their share of
	// Requests.
	Goodput      float64 `json:"goodput"`
	GoodFraction float64 `json:"good_fraction"`
	// Latencies in milliseconds: time to first token, inter-token latency
	// (every gap between two tokens of a stream), end-to-end.
	TTFT Dist `json:"ttft_ms"`
	ITL  Dist `json:"itl_ms"`
	E2E  Dist `json:"e2e_ms"`
}

// Dist summarizes a latency distribution in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// MaxReportBytes bounds a report file ReadReport accepts.
const MaxReportBytes = 64 << 20

// ReadReport reads a report as Run's JSON wrote it (what --json and --out
// write, what `ctl bench plot` reads).
func ReadReport(r io.Reader) (Report, error) {
	var rep Report
	dec := json.NewDecoder(io.LimitReader(r, MaxReportBytes))
	if err := dec.Decode(&rep); err != nil {
		return Report{}, fmt.Errorf("bench: report: %w", err)
	}
	if len(rep.Steps) > MaxSteps*16 {
		return Report{}, fmt.Errorf("bench: report: %d steps", len(rep.Steps))
	}
	return rep, nil
}
