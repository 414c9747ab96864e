// Package backends defines the small interface between llorch's worker daemon
// and an inference engine. Its one implementation is backends/llamacpp; the
// interface keeps core/workerd (slots, decode loop, prompt cache) free of cgo,
// and lets the worker's tests wrap the real model, for instance to pace its
// decode steps. There is no fake engine: tests run llama.cpp on the synthetic
// model.
package backends

import "errors"

// Token is a vocabulary id.
type Token = int32

// Info describes a loaded model.
type Info struct {
	Arch       string
	Desc       string
	CtxTrain   int
	VocabSize  int
	Params     uint64
	SizeBytes  uint64
	HasChatTpl bool
	// ChatTemplateSource is the model's tokenizer.chat_template (Jinja source),
	// or "" when it has none. core/prompt turns it into a template.
	ChatTemplateSource string
}

// Model is a loaded model: vocabulary and weights, shared by its contexts.
type Model interface {
	Info() Info
	// Tokenize turns text into tokens. special parses control tokens such as
	// <|im_start|> written in the text (used for chat-formatted prompts).
	Tokenize(text string, addSpecial, special bool) ([]Token, error)
	// Piece returns the bytes a token stands for (control tokens render empty).
	Piece(t Token) []byte
	// IsEOG reports whether a token ends generation.
	IsEOG(t Token) bool
	// NewContext creates an inference context over this model.
	NewContext(p ContextParams) (Context, error)
	Close() error
}

// ContextParams configure a Context.
type ContextParams struct {
	// SeqCtx is the context size of each sequence, in tokens.
	SeqCtx int
	// Seqs is the number of independent sequences (slots).
	Seqs int
	// Batch is the most tokens one Decode call may carry.
	Batch        int
	Threads      int
	ThreadsBatch int
	// FlashAttn: "auto", "on" or "off".
	FlashAttn string
}

// Batch is one decode step: parallel arrays, one entry per token.
type Batch struct {
	Tokens []Token
	Pos    []int32
	Seq    []int32
	Logits []bool
}

// Reset empties the batch, keeping its storage.
func (b *Batch) Reset() {
	b.Tokens, b.Pos, b.Seq, b.Logits = b.Tokens[:0], b.Pos[:0], b.Seq[:0], b.Logits[:0]
}

// Add appends one token.
func (b *Batch) Add(t Token, pos, seq int32, logits bool) {
	b.Tokens = append(b.Tokens, t)
	b.Pos = append(b.Pos, pos)
	b.Seq = append(b.Seq, seq)
	b.Logits = append(b.Logits, logits)
}

// Len is the number of tokens in the batch.
func (b *Batch) Len() int { return len(b.Tokens) }

// SamplerParams configure one sequence's sampler chain.
type SamplerParams struct {
	Temperature       float64 // 0 = greedy
	TopK              int
	TopP              float64
	MinP              float64
	RepetitionPenalty float64
	// FrequencyPenalty and PresencePenalty are OpenAI's (0 = off).
	FrequencyPenalty float64
	PresencePenalty  float64
	// PenaltyLastN is how many recent tokens the penalties look at (0 = 64).
	PenaltyLastN int
	Seed         uint32
	LogitBias    map[Token]float64
	// IgnoreEOS bans end-of-generation tokens.
	IgnoreEOS bool
	// Grammar, when set, is a GBNF grammar (root rule "root") every sampled
	// token must follow; end of generation is allowed only where it is complete.
	Grammar string
}

// Sampler picks tokens for one sequence. It is used only by the goroutine that
// drives its Context.
type Sampler interface {
	// AcceptPrompt records prompt tokens for the penalties only.
	AcceptPrompt(tokens []Token)
	// Accept records tokens as generated before (a resumed generation): every
	// part of the chain sees them, the grammar too, which refuses tokens it
	// does not allow.
	Accept(tokens []Token) error
	Close()
}

// Probs asks Sample for the sampled token's log-probability and its Top most
// likely alternatives, from the distribution the chain drew from.
type Probs struct {
	Top     int // alternatives wanted (0..20)
	Logprob float64
	Alts    []Alt
}

// Alt is one alternative token and its log-probability.
type Alt struct {
	ID      Token
	Logprob float64
}

// Context holds the KV cache of Seqs sequences and decodes batches. It is not
// safe for concurrent use: one goroutine drives it.
type Context interface {
	// SeqCtx is the context size of one sequence.
	SeqCtx() int
	Decode(b *Batch) error
	// NewSampler builds a sampler chain; a grammar that does not parse is an
	// error wrapping ErrGrammar.
	NewSampler(p SamplerParams) (Sampler, error)
	// Sample picks the next token from the logits of batch entry i of the last
	// Decode and accepts it into the sampler. probs, when not nil, receives
	// the token's log-probability. It fails when the grammar allows no token.
	Sample(s Sampler, i int, probs *Probs) (Token, error)
	// TrimSeq removes positions [from, end) of sequence seq from the KV cache;
	// from = 0 clears the sequence.
	TrimSeq(seq int, from int) error
	Close() error
}

// GrammarChecker is the optional ability of a Model to check a grammar
// against its vocabulary before a request takes a slot.
type GrammarChecker interface {
	CheckGrammar(gbnf string) error
}

// ErrGrammar is the error of a grammar llama.cpp cannot use.
var ErrGrammar = errors.New("invalid grammar")

// SeqCopier is the optional ability of a Context to copy one sequence's KV
// cache to another, so that a slot can start from a prefix another slot has
// already evaluated instead of prefilling it again.
type SeqCopier interface {
	CopySeq(src, dst int) error
}

// DeviceReporter is a Model that runs on an accelerator and can name it: the
// device's name and its memory in bytes ("" and 0 on the CPU).
type DeviceReporter interface {
	Device() (name string, vramBytes uint64)
}
