package routing

import (
	"io/fs"
	"testing"

	llembed "github.com/llorch/llorch/embed"
)

// newTask is a valid interactive task; tests tweak it.
func newTask() Task {
	return Task{ID: "t1", Model: "llama", Priority: "interactive", MaxTokens: 256, PromptTokens: 100,
		SessionID: "s1", Key: "key-1", Labels: map[string]string{"team": "a"}}
}

// example returns an embedded example script.
func example(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := fs.ReadFile(llembed.RoutingExamples, name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
