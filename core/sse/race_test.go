//go:build race

package sse

// raceEnabled: the race detector makes sync.Pool (used by encoding/json) drop
// items, so allocation counts are not meaningful.
const raceEnabled = true
