package worker_test

import (
	"testing"

	"github.com/llorch/llorch/core/openai/openaitest"
)

// TestOpenAISDK runs the official openai npm package against a real `llorch
// worker` process with --token: chat (stream and not), completions, models,
// include_usage, and the SDK's error classes for 404, 400 and 401.
func TestOpenAISDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	const token = "sdk-secret"
	p := startProc(t, "--token", token)
	sdk.Run(t, p.url, token, "tiny")
}

// TestOpenAIFeaturesSDK runs tests/openai-sdk/features.mjs against a real
// worker: structured outputs validated with ajv, tool calls (stream and not,
// named, required, a role tool follow-up), logprobs, n 2 and penalties.
func TestOpenAIFeaturesSDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	const token = "sdk-secret"
	p := startProc(t, "--token", token, "--slots", "2", "--ctx", "4096")
	sdk.RunScript(t, "features.mjs", p.url, token, "tiny")
}
