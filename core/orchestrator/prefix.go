package orchestrator

import (
	"slices"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prefix"
	"github.com/llorch/llorch/core/scheduler"
)

// Cache-aware placement: the dispatcher keeps a prefix index (core/prefix)
// of which worker probably holds which prompt prefix in its KV cache, scores
// each candidate by the prompt tokens it is expected to hold, and checks
// every prediction against the cached_tokens the worker reports in started:
// what was not confirmed leaves the index. A worker holds what it served:
// the prompt from its started event, the prompt and the generated text from
// its end.

// predictCap bounds the candidates an explanation lists.
const predictCap = 32

// hashesLocked returns e's prompt block hashes, computed once.
func (d *dispatcher) hashesLocked(e *entry) []uint64 {
	if e.hashes != nil || e.req == nil {
		return e.hashes
	}
	bb := d.prefix.BlockBytes()
	stream := prefix.AppendRequest(nil, &e.req.ExecuteRequest)
	e.streamBytes = len(stream)
	e.st.PromptTokens = d.prefix.Tokens(e.model, (len(stream)+bb-1)/bb)
	stream = indexed(stream, bb)
	e.hashes = prefix.Hashes(make([]uint64, 0, len(stream)/bb+1), e.model, stream, bb)
	return e.hashes
}

// indexed cuts a stream to what the index keeps of it (DefaultMaxSeqBlocks
// blocks): a queued task of a 4 MiB prompt holds 32 KiB of hashes, not 512.
func indexed(stream []byte, blockBytes int) []byte {
	return stream[:min(len(stream), prefix.DefaultMaxSeqBlocks*blockBytes)]
}

// cachedLocked fills d.cached with the prompt tokens each worker of ws is
// expected to hold of e's prompt, and d.room with the fraction of its slots
// caching nothing, and returns d.cached.
func (d *dispatcher) cachedLocked(e *entry, ws []scheduler.Worker) []int {
	hashes := d.hashesLocked(e)
	// Only workers that could take the task are looked up (the others
	// score nothing): d.ids and d.held are theirs, d.at their ws index.
	d.ids, d.at = d.ids[:0], d.at[:0]
	for i := range ws {
		if w := &ws[i]; w.Model == e.model && w.State == api.WorkerHealthy && w.SlotsBusy < w.SlotsTotal {
			d.ids = append(d.ids, w.ID)
			d.at = append(d.at, i)
		}
	}
	d.held = slices.Grow(d.held[:0], len(d.ids))[:len(d.ids)]
	d.prefix.Lookup(hashes, d.ids, d.held)
	d.cached = slices.Grow(d.cached[:0], len(ws))[:len(ws)]
	clear(d.cached)
	d.room = slices.Grow(d.room[:0], len(ws))[:len(ws)]
	clear(d.room)
	for k, blocks := range d.held {
		i := d.at[k]
		d.cached[i] = min(d.prefix.Tokens(e.model, blocks), e.st.PromptTokens)
		if n := ws[i].SlotsTotal; n > 0 {
			d.room[i] = float64(max(0, n-d.prefix.Sequences(ws[i].ID))) / float64(n)
		}
	}
	return d.cached
}

// weights are the scheduler weights of the configured policy.
func (d *dispatcher) weights() scheduler.Weights {
	w := scheduler.DefaultWeights
	if d.cfg.RoutingPolicy == PolicyLeastLoaded {
		w.Cache, w.Room = 0, 0
	}
	return w
}

// candidates lists the scored candidates of dec for an explanation, best
// first, with the tokens each was expected to hold (cached by ws index).
func candidates(dec *scheduler.Decision, ws []scheduler.Worker, cached []int) []api.CandidateScore {
	if len(dec.Scores) != len(dec.Candidates) || len(dec.Candidates) == 0 {
		return nil
	}
	out := make([]api.CandidateScore, len(dec.Candidates))
	for k, i := range dec.Candidates {
		w := &ws[i]
		out[k] = api.CandidateScore{WorkerID: w.ID, Score: dec.Scores[k], SlotsFree: max(0, w.SlotsTotal-w.SlotsBusy), Load: w.Load}
		if i < len(cached) {
			out[k].ExpectedCachedTokens = cached[i]
		}
	}
	slices.SortStableFunc(out, func(a, b api.CandidateScore) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	if len(out) > predictCap {
		out = out[:predictCap]
	}
	return out
}

// observe checks the prediction of an attempt against the worker's started
// event, corrects the index, and records that the worker's slot now holds
// the prompt. A continued attempt (its cache covers resumed tokens) and a
// request that bypasses the cache tell nothing of the prediction.
func (d *dispatcher) observe(a *attempt, s *api.Started) {
	e := a.e
	a.slot = s.Slot
	if a.resumed > 0 || e.hashes == nil {
		return
	}
	if cp := e.req.CachePrompt; cp != nil && !*cp {
		return
	}
	d.prefix.Learn(e.model, e.streamBytes, s.PromptTokens)
	observed := d.prefix.BlocksFor(e.model, s.CachedTokens)
	d.prefix.Observe(a.workerID, e.hashes, observed)
	d.m.prefixHitTokens.Add(float64(max(0, s.CachedTokens)))
	d.m.prefixPromptTokens.Add(float64(max(0, s.PromptTokens)))
	d.m.prefixPredictedTokens.Add(float64(a.predicted))
	outcome := "none"
	switch predictedBlocks := d.prefix.BlocksFor(e.model, a.predicted); {
	case predictedBlocks > 0 && observed+prefix.Tolerance >= predictedBlocks:
		outcome = "confirmed"
	case predictedBlocks > 0:
		outcome = "short"
	case s.CachedTokens > 0:
		outcome = "unexpected"
	}
	d.m.prefixPredictions.WithLabelValues(outcome).Inc()
	d.prefix.RecordSlot(a.workerID, a.slots, a.slot, e.hashes)
	d.prefixGauges()
}

// served records that the worker's slot holds the prompt and the text it
// generated, once the task succeeded: the next turn of a conversation
// carries both.
func (d *dispatcher) served(a *attempt, text string) {
	e := a.e
	if e.req == nil {
		return
	}
	if cp := e.req.CachePrompt; cp != nil && !*cp {
		return
	}
	bb := d.prefix.BlockBytes()
	stream := indexed(prefix.AppendGenerated(nil, &e.req.ExecuteRequest, text), bb)
	d.prefix.RecordSlot(a.workerID, a.slots, a.slot, prefix.Hashes(nil, e.model, stream, bb))
	d.prefixGauges()
}

// forgetWorker drops what the index holds of a worker whose KV cache is gone
// (a new process, dead, removed).
func (d *dispatcher) forgetWorker(id string) {
	d.prefix.Forget(id)
	d.prefixGauges()
}

func (d *dispatcher) prefixGauges() {
	st := d.prefix.Stats()
	d.m.prefixBlocks.Set(float64(st.Blocks))
	d.m.prefixSequences.Set(float64(st.Sequences))
}
