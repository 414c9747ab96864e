package api

// SessionCache is a worker's answer about one session's KV cache (GET and
// DELETE /v1/sessions/{id} on a worker, orchestrator to worker only): the
// slots whose cache the session's last job there left, and how many tokens
// they hold. After a DELETE, Slots are the slots cleared now and Pending
// those that will be cleared when their running job ends.
type SessionCache struct {
	SessionID    string `json:"session_id"`
	Slots        []int  `json:"slots"`
	Pending      []int  `json:"pending,omitempty"`
	CachedTokens int    `json:"cached_tokens"`
	// Warm is whether a slot still holds cached tokens of the session.
	Warm bool `json:"warm"`
}
