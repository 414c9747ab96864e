package backends

// EmbedModel is the optional ability of a Model to compute embeddings: a
// worker started with --embedding asks its model for an Embedder instead of a
// generation Context.
type EmbedModel interface {
	NewEmbedder(p EmbedParams) (Embedder, error)
}

// EmbedParams configure an Embedder.
type EmbedParams struct {
	// Tokens is the most tokens one decode carries: the longest input, and
	// the budget several inputs share when they are batched.
	Tokens int
	// Seqs is the most inputs one decode carries, each its own sequence.
	Seqs         int
	Threads      int
	ThreadsBatch int
	// FlashAttn: "auto", "on" or "off".
	FlashAttn string
}

// EmbedInfo describes an Embedder.
type EmbedInfo struct {
	// Size is the length of every vector (the model's n_embd).
	Size int
	// MaxTokens is the longest input, in tokens.
	MaxTokens int
	// Pooling is how token vectors become one vector per input: "mean",
	// "cls" or "last".
	Pooling string
	// PoolingDefaulted is true when the model names no pooling (or "none")
	// and Pooling is the default, mean.
	PoolingDefaulted bool
}

// Embedder turns token sequences into one vector each. It is not safe for
// concurrent use: one goroutine calls it at a time.
type Embedder interface {
	Info() EmbedInfo
	// Embed returns one pooled vector per input (not normalized), in order.
	// Inputs are packed into as few decodes as the limits allow, each input
	// its own sequence; each must have 1..MaxTokens tokens.
	Embed(inputs [][]Token) ([][]float32, error)
	Close() error
}
