// Package bench is llorch's one load generator: it drives an
// OpenAI-compatible server (llama-server, vLLM, Ollama, a llorch worker or
// orchestrator) or llorch's native /v2/tasks with streamed requests, and
// measures what a client sees. `llorch ctl bench` is its command line; Run
// is the library; Report is the JSON a run writes and Plot draws.
//
// # Requests
//
// Every request streams (stream: true, stream_options.include_usage) with
// temperature 0, a fixed seed and, by default, ignore_eos, so the server
// generates every requested token. Prompts are made of common English
// words sized in tokens through a calibration of one-token probes that
// give the server's usage.prompt_tokens. Tokenizers that split text at
// spaces give a word the same tokens wherever it stands after a space, so
// one probe a word ("A W" less "A") prices each word of the vocabulary,
// and a text is written word by word until its price reaches what is
// asked: random words differ in tokens (one to five on the synthetic
// models), and a mean tokens per word from a probe or two missed by 10%
// and more. Five probes shaped like the run's requests (the shared prefix,
// then unique text; some 120 probes in all) give the overhead (chat template, BOS, a first word's
// extra tokens) and a scale for tokenizers where words do not add up.
// Probes the server turns away as busy (503, 429) are sent again after a
// pause. Without usage the defaults (1.3 tokens a word, no overhead) stand,
// and the report says so. A request's lengths and text are made from the
// seed, its index in the run and the calibration alone, so two servers
// with one tokenizer and one seed get the very same requests. A shared prefix is the same
// text at the head of every prompt (the system message in chat); what
// follows it differs between requests from its first word.
//
// # Load
//
// A closed loop at concurrency K keeps K requests in flight, each client
// sending its next request when the last one ended. An open loop sends
// requests at Poisson arrivals (exponential gaps drawn from the seed)
// whatever the server's pace, with at most MaxInFlight in flight; an
// arrival beyond that is not sent and counts as the error
// "0 inflight-limit". A trace replay keeps the recorded gaps between
// arrivals (divided by the speed). A step ends when its request count is
// reached or its duration has passed (no new request starts; those in
// flight finish); the run's timeout cuts everything. Warm-up requests run
// before each step at its load and count in no figure.
//
// # Measurement
//
// Clocks are monotonic (time.Now differences). A request's clock starts
// right before it is sent (connection set-up included). Connections are
// kept alive; an OpenAI request carries an Idempotency-Key so that, when
// the server had closed the kept-alive connection it was written to
// before reading it, Go's transport sends it again on a new one (a request
// no server saw is no failure of the server's; its clock keeps running).
//
//   - TTFT, time to first token: until the first chunk that carries text
//     (OpenAI) or the first token event (native).
//   - ITL, inter-token latency: every gap between two such consecutive
//     chunks or events of a stream; the SLO bounds a request's mean gap.
//   - E2E, end to end: until the stream has been read to its end (after
//     [DONE] or the terminal event, to EOF).
//
// Percentiles interpolate linearly between ranks. Latencies come from
// successful requests only; failures count by "STATUS CODE": the HTTP
// status and the error code of the body (OpenAI-shaped, llorch, vLLM),
// "200 CODE" for an error inside a stream, "0 connect", "0 read",
// "0 truncated", "0 protocol" or "0 timeout" without a response.
// Throughput (tokens/s, requests/s, goodput) divides by the step's wall
// time, from its first send to its last end.
//
// # Token counting
//
// Tokens are counted from the stream: chunks with non-empty text or
// content (OpenAI), token events (native, one per token even when its text
// is held back). They are checked against the server's own count
// (usage.completion_tokens, end.tokens_out) and every request where the two
// differ counts as a usage mismatch. They can differ honestly: a server
// that holds back the bytes of an incomplete UTF-8 character (llama-server
// does, and random models produce such tokens) sends two tokens' text in
// one chunk, so an OpenAI stream may carry fewer chunks than tokens. Output
// tokens/s therefore counts, per request, the server's usage figure when
// the stream bears it out — no fewer tokens than chunks, no more than
// max_tokens — and the stream's count otherwise. The report keeps both
// totals (stream_tokens, usage_output_tokens) and the mismatch count; ITL
// gaps are between chunks, so a merged chunk makes one longer gap.
package bench
