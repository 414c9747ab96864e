// Package openai serves llorch's OpenAI-compatible API — POST /chat/completions,
// POST /completions, GET /models — on an echo group that a daemon mounts at
// /v1, over any Backend: the orchestrator (admission → queue → scheduler →
// worker) or one worker's engine.
//
//	client ──/v1 JSON──► Register's handlers ──Request──► Backend.Submit ──► Stream
//	   ▲                     │ parse, validate (400 + param)                 │
//	   └── chat.completion(.chunk) / text_completion ◄── started/token/end/error
//
// The package translates, and owns nothing else: requests become an
// api.ExecuteRequest (validated like any other), llorch's stream events become
// OpenAI's objects and chunks, and api error codes become OpenAI's error shape
// through one table (errors.go). Responses are committed lazily: an error that
// arrives before the first event with content is still an HTTP status (so the
// SDKs' retry logic sees 429/503), later ones are an {"error":…} chunk.
//
// A request with n choices is n generations (choices.go): the first runs
// alone until its first token, so that on a worker the others start from
// its KV cache; their events are merged by index. Token events carry
// logprobs when asked (chat's content entries, completions' legacy arrays).
// When the worker names a tool format in its started event, each choice's
// text goes through core/toolcall's parser (tools.go): calls become
// message.tool_calls or streamed delta.tool_calls, the rest is content.
// Constraints (response_format, forced tool calls) are the worker's: this
// package only passes them on. POST /embeddings (embeddings.go) is a
// separate Backend, mounted on embedding workers and the orchestrator.
package openai
