package worker_test

import (
	"testing"

	"github.com/llorch/llorch/core/openai/openaitest"
)

// TestOpenAISDK runs the official openai npm package against a real `llorch
// worker` process with --token: check.mjs (chat, stream and not, completions,
// models, include_usage, the SDK's error classes for 404, 400 and 401) and
// features.mjs (structured outputs validated with ajv, tool calls, logprobs,
// n 2 and penalties).
func TestOpenAISDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	const token = "sdk-secret"
	p := startProc(t, "--token", token, "--slots", "2", "--ctx", "4096")
	for _, script := range []string{"check.mjs", "features.mjs"} {
		t.Run(script, func(t *testing.T) { sdk.RunScript(t, script, p.url, token, "tiny") })
	}
}
