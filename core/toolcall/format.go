package toolcall

import (
	"crypto/rand"
	"errors"

	"github.com/llorch/llorch/core/prompt"
)

// Format is a family's tool-call syntax.
type Format string

// The formats.
const (
	// Hermes is Qwen2.5's and Hermes' <tool_call> JSON, for every ChatML
	// model and the families without a native tool syntax.
	Hermes Format = "hermes"
	// Llama3 is Llama 3.1/3.2's JSON reply {"name", "parameters"}.
	Llama3 Format = "llama3"
	// Mistral is Mistral's [TOOL_CALLS] [...].
	Mistral Format = "mistral"
)

// ErrFormat is returned for a format that is not one of the three, or one
// that does not fit the template (llama3 needs the llama3 template, mistral a
// Mistral one).
var ErrFormat = errors.New("toolcall: unknown format or format does not fit the template")

// FormatFor is the format for a model's chat template: Llama 3 templates get
// Llama3, the Mistral templates Mistral, everything else (ChatML, and the
// families without native tool support) Hermes.
func FormatFor(t prompt.Template) Format {
	switch {
	case t == prompt.Llama3:
		return Llama3
	case isMistral(t):
		return Mistral
	}
	return Hermes
}

func isMistral(t prompt.Template) bool {
	switch t {
	case prompt.MistralV1, prompt.MistralV3, prompt.MistralV3Tekken, prompt.MistralV7, prompt.MistralV7Tekken:
		return true
	}
	return false
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// NewID is a fresh call id: "call_" and 24 random letters and digits (the
// last 9 of them are the id Mistral's templates use).
func NewID() string {
	var r [24]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics rather than return an error)
	b := []byte("call_")
	for _, c := range r {
		b = append(b, idChars[int(c)%len(idChars)])
	}
	return string(b)
}
