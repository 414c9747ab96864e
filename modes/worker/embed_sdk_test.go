package worker_test

import (
	"testing"

	"github.com/llorch/llorch/core/openai/openaitest"
)

// TestEmbeddingsSDK runs tests/openai-sdk/embeddings.mjs against a real
// `llorch worker --embedding` process with --token: two inputs give two unit
// vectors of the model's size, identical inputs identical vectors, base64 and
// float agree, dimensions other than the size is a 400.
func TestEmbeddingsSDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	const token = "sdk-secret"
	p := startProc(t, "--token", token, "--embedding", "--ctx", "256")
	sdk.RunScript(t, "embeddings.mjs", p.url, token, "tiny")
}
