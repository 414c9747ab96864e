package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/llorch/llorch/core/api"
)

// Limits on a trace file.
const (
	MaxTraceRecords = 1_000_000
	maxTraceLine    = 16 << 20
)

// ReadTrace reads a JSON Lines trace (api.TraceRecord a line, blank lines
// skipped) and returns its records ordered by arrival. Every record is
// checked: lengths 0..MaxLength, arrival not negative.
func ReadTrace(r io.Reader) ([]api.TraceRecord, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxTraceLine)
	var out []api.TraceRecord
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if len(out) == MaxTraceRecords {
			return nil, fmt.Errorf("trace: more than %d records", MaxTraceRecords)
		}
		var rec api.TraceRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("trace: line %d: %w", line, err)
		}
		switch {
		case rec.ArrivalMs < 0:
			return nil, fmt.Errorf("trace: line %d: arrival_ms %d is negative", line, rec.ArrivalMs)
		case rec.PromptTokens < 0 || rec.PromptTokens > MaxLength, rec.OutputTokens < 0 || rec.OutputTokens > MaxLength,
			rec.MaxTokens < 0 || rec.MaxTokens > MaxLength:
			return nil, fmt.Errorf("trace: line %d: prompt_tokens, output_tokens and max_tokens must be 0..%d", line, MaxLength)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("trace: line %d: %w", line+1, err)
	}
	slices.SortStableFunc(out, func(a, b api.TraceRecord) int {
		switch {
		case a.ArrivalMs < b.ArrivalMs:
			return -1
		case a.ArrivalMs > b.ArrivalMs:
			return 1
		}
		return 0
	})
	return out, nil
}
