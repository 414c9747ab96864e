package bench

import (
	"math"
	"slices"
	"time"
)

// summarize turns a step's samples into its figures. Latencies come from
// successful requests only; a failed request counts in Requests and Errors.
func summarize(step Step, samples []*sample, slo SLO) Step {
	var ttft, itl, e2e []float64
	var first, last time.Time
	var prompts, cached, withPrompt, good int
	for _, s := range samples {
		step.Requests++
		if !s.sent.IsZero() && (first.IsZero() || s.sent.Before(first)) {
			first = s.sent
		}
		if s.ended.After(last) {
			last = s.ended
		}
		if s.errKey != "" {
			if step.Errors == nil {
				step.Errors, step.ErrorMessages = map[string]int{}, map[string]string{}
			}
			if step.Errors[s.errKey] == 0 {
				step.ErrorMessages[s.errKey] = s.errMsg
			}
			step.Errors[s.errKey]++
			continue
		}
		step.OK++
		step.StreamTokens += s.streamTokens
		step.OutputTokens += s.outputTokens()
		if s.outputTokens() < s.maxTokens {
			step.Short++
		}
		if s.hasUsage {
			step.UsageOutputTokens += s.usageTokens
			if s.usageTokens != s.streamTokens {
				step.UsageMismatches++
			}
		} else {
			step.UsageMissing++
		}
		if s.hasPrompt {
			withPrompt++
			prompts += s.prompt
			cached += s.cached
		}
		if s.streamTokens > 0 {
			ttft = append(ttft, ms(s.ttft))
		}
		for _, d := range s.itl {
			itl = append(itl, ms(d))
		}
		e2e = append(e2e, ms(s.e2e()))
		if s.meets(slo) {
			good++
		}
	}
	if withPrompt > 0 {
		step.PromptTokens = float64(prompts) / float64(withPrompt)
		step.CachedTokens = float64(cached) / float64(withPrompt)
	}
	if last.After(first) && !first.IsZero() {
		step.DurationS = last.Sub(first).Seconds()
		step.OutputTokPerS = float64(step.OutputTokens) / step.DurationS
		step.ReqPerS = float64(step.OK) / step.DurationS
		step.Goodput = float64(good) / step.DurationS
	}
	if step.Requests > 0 {
		step.GoodFraction = float64(good) / float64(step.Requests)
	}
	step.TTFT, step.ITL, step.E2E = dist(ttft), dist(itl), dist(e2e)
	return step
}

// outputTokens is the request's generated tokens: the server's usage figure
// where the stream bears it out (at least one token a chunk, at most
// max_tokens), else the stream's count.
func (s *sample) outputTokens() int {
	if s.hasUsage && s.usageTokens >= s.streamTokens && (s.maxTokens <= 0 || s.usageTokens <= s.maxTokens) {
		return s.usageTokens
	}
	return s.streamTokens
}

// meanITL is the mean gap between the request's tokens (0 with fewer than two).
func (s *sample) meanITL() time.Duration {
	if len(s.itl) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.itl {
		sum += d
	}
	return sum / time.Duration(len(s.itl))
}

// meets reports whether a successful request met every set bound of slo. A
// request that streamed no token has no TTFT and misses a TTFT bound.
func (s *sample) meets(slo SLO) bool {
	switch {
	case slo.TTFTMs > 0 && (s.streamTokens == 0 || ms(s.ttft) > slo.TTFTMs):
		return false
	case slo.ITLMs > 0 && ms(s.meanITL()) > slo.ITLMs:
		return false
	case slo.E2EMs > 0 && ms(s.e2e()) > slo.E2EMs:
		return false
	}
	return true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Distribution summarizes latencies in milliseconds as a step's figures
// do; v is sorted in place.
func Distribution(v []float64) Dist { return dist(v) }

// dist summarizes values (milliseconds). Percentiles interpolate linearly
// between the closest ranks (NumPy's default, as vLLM's benchmark reports).
func dist(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	slices.Sort(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return Dist{N: len(v), Mean: round3(sum / float64(len(v))), P50: percentile(v, 50), P90: percentile(v, 90),
		P95: percentile(v, 95), P99: percentile(v, 99), Max: round3(v[len(v)-1])}
}

// percentile of sorted v, p in 0..100.
func percentile(v []float64, p float64) float64 {
	pos := p / 100 * float64(len(v)-1)
	i := int(pos)
	if i >= len(v)-1 {
		return round3(v[len(v)-1])
	}
	return round3(v[i] + (pos-float64(i))*(v[i+1]-v[i]))
}

// round3 keeps a millisecond figure to the microsecond.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
