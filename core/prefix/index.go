package prefix

import (
	"math"
	"sync"
)

// Defaults and bounds.
const (
	DefaultBlockBytes   = 64
	DefaultMaxSeqBlocks = 4096
	DefaultMaxBlocks    = 1 << 20
	// MaxSlots caps the sequences one worker is tracked with, whatever slot
	// count it claims.
	MaxSlots = 256
	// Tolerance is how many blocks past the observed count Observe keeps
	// believing: cached tokens become blocks through a learned ratio, and a
	// worker always evaluates the prompt's last token again.
	Tolerance = 1
	// DefaultTokensPerByte is the ratio before a model's first Learn.
	DefaultTokensPerByte = 0.25
	// maxModels bounds the models with a learned ratio; others get the default.
	maxModels = 4096
	// Learned ratios are clamped to this range, and folded in with this weight.
	minTokensPerByte = 1.0 / 64
	maxTokensPerByte = 4
	learnWeight      = 0.1
)

// Config sizes an Index. Zero or negative fields take their defaults.
type Config struct {
	// BlockBytes is the size of a hashed block of the stream.
	BlockBytes int
	// MaxSeqBlocks: a longer stream is indexed up to this many blocks.
	// It is at most MaxBlocks.
	MaxSeqBlocks int
	// MaxBlocks bounds the block entries of all sequences of all workers;
	// beyond it the least recently recorded sequences are dropped.
	MaxBlocks int
}

// Stats counts what an Index holds.
type Stats struct {
	// Blocks is the block entries held: the lengths of all sequences summed.
	Blocks    int
	Sequences int
	Workers   int
	// Models is the number of models with a learned token ratio.
	Models int
}

// seq is one tracked slot's cache: the chain of block hashes it holds.
type seq struct {
	w    *worker
	h    []uint64
	used uint64 // Index.tick at its last Record
	slot int    // the worker's slot id, -1 when not reported
	// The global recency list, most recent first.
	prev, next *seq
}

type worker struct {
	id   string
	seqs []*seq
	// held counts, per block hash, the sequences holding it.
	held map[uint64]int32
	peak int // the most entries held has had since it was made
}

// Index tracks which block-hash chains each worker probably holds in its
// slots' KV caches. It is safe for concurrent use; its lock is a leaf (no
// callback runs under it). It reads no clock: recency is a counter.
type Index struct {
	cfg Config

	mu      sync.RWMutex
	workers map[string]*worker
	lru     seq // sentinel of the recency list: lru.next is the most recent
	tick    uint64
	blocks  int
	seqs    int
	ratios  map[string]float64
	// anyone counts, per block hash, the workers holding it: the longest
	// prefix any worker holds bounds every worker's search.
	anyone     map[uint64]int32
	anyonePeak int
}

// New returns an empty Index.
func New(cfg Config) *Index {
	if cfg.BlockBytes <= 0 {
		cfg.BlockBytes = DefaultBlockBytes
	}
	if cfg.MaxBlocks <= 0 {
		cfg.MaxBlocks = DefaultMaxBlocks
	}
	if cfg.MaxSeqBlocks <= 0 {
		cfg.MaxSeqBlocks = DefaultMaxSeqBlocks
	}
	cfg.MaxSeqBlocks = min(cfg.MaxSeqBlocks, cfg.MaxBlocks)
	x := &Index{cfg: cfg, workers: make(map[string]*worker), ratios: make(map[string]float64), anyone: make(map[uint64]int32)}
	x.lru.next, x.lru.prev = &x.lru, &x.lru
	return x
}

// BlockBytes is the block size the Index was made with: pass it to Hashes.
func (x *Index) BlockBytes() int { return x.cfg.BlockBytes }

func (x *Index) clip(hashes []uint64) []uint64 {
	return hashes[:min(len(hashes), x.cfg.MaxSeqBlocks)]
}

// Lookup sets out[i] to how many leading blocks of hashes workers[i] is
// expected to hold, 0 for a worker the Index does not know. out should be
// as long as workers; only the first min(len(out), len(workers)) are set.
// It costs about log2(D) map lookups a worker holding the first block, one
// for any other, where D is the longest prefix of hashes any worker holds
// (found first, in log2(len(hashes)) lookups); it does not allocate.
func (x *Index) Lookup(hashes []uint64, workers []string, out []int) {
	hashes = x.clip(hashes)
	n := min(len(out), len(workers))
	x.mu.RLock()
	defer x.mu.RUnlock()
	hashes = hashes[:holds(x.anyone, hashes)]
	for i := range n {
		out[i] = 0
		if len(hashes) == 0 {
			continue
		}
		if w := x.workers[workers[i]]; w != nil {
			out[i] = holds(w.held, hashes)
		}
	}
}

// holds is the length of the longest prefix of hashes held (counted in
// held). A hash names its whole prefix and a sequence holds every prefix of
// itself, so what a worker (or all of them) holds of a chain is
// prefix-closed: binary search finds its end.
func holds(held map[uint64]int32, hashes []uint64) int {
	if len(hashes) == 0 || held[hashes[0]] == 0 {
		return 0
	}
	lo, hi := 1, len(hashes) // held: hashes[:lo]; not held: hashes[:hi+1]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if held[hashes[mid-1]] > 0 {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// commonPrefix is the length of the common prefix of two chains (binary
// search: chained hashes that are equal have equal prefixes).
func commonPrefix(a, b []uint64) int {
	lo, hi := 0, min(len(a), len(b))
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if a[mid-1] == b[mid-1] {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Record notes that workerID, which has slots slots, now holds the chain
// hashes in one of them: it served that stream. As the worker picks its
// slot, the tracked sequence sharing the longest prefix with hashes is
// replaced (ties: the least recently recorded), else a new one is tracked
// while fewer than slots are, else the worker's least recently recorded one
// is replaced. slots <= 0 means 1; it is capped at MaxSlots. hashes longer
// than MaxSeqBlocks are recorded up to it; hashes is not retained.
//
// When the worker said which slot it used, RecordSlot is exact where Record
// guesses.
func (x *Index) Record(workerID string, slots int, hashes []uint64) {
	x.RecordSlot(workerID, slots, -1, hashes)
}

// RecordSlot is Record for a worker that reported the slot it used (the
// started event's slot, 0..slots-1): the sequence tracked for that slot is
// replaced, or, when none is, a new one is tracked while fewer than slots
// are, else the least recently recorded one of no known slot, else the least
// recently recorded one. A slot out of range is unknown: Record's guess.
func (x *Index) RecordSlot(workerID string, slots, slot int, hashes []uint64) {
	hashes = x.clip(hashes)
	slots = min(max(slots, 1), MaxSlots)
	if slot < 0 || slot >= slots {
		slot = -1
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.tick++
	w := x.workers[workerID]
	if w == nil {
		if len(hashes) == 0 {
			return
		}
		w = &worker{id: workerID, held: make(map[uint64]int32, len(hashes))}
		x.workers[workerID] = w
	}
	best, bestN := w.pick(hashes, slots, slot)
	switch {
	case best == nil && len(hashes) == 0:
		// An empty stream in a free slot: nothing to hold.
	case best == nil:
		best = &seq{w: w, slot: slot}
		w.seqs = append(w.seqs, best)
		x.seqs++
		x.setLocked(best, hashes, 0)
	case len(hashes) == 0:
		x.removeLocked(best)
		best = nil
	default:
		if slot >= 0 {
			best.slot = slot
		}
		x.setLocked(best, hashes, bestN)
	}
	if best != nil {
		best.used = x.tick
		x.unlink(best)
		x.pushFront(best)
	}
	for len(w.seqs) > slots {
		x.removeLocked(w.lru(best, false))
	}
	for x.blocks > x.cfg.MaxBlocks && x.lru.prev != &x.lru && x.lru.prev != best {
		x.removeLocked(x.lru.prev)
	}
}

// pick is the sequence of w that serving hashes in slot (-1: unknown)
// replaces, with its common prefix with hashes; nil for a free slot.
func (w *worker) pick(hashes []uint64, slots, slot int) (*seq, int) {
	if slot >= 0 {
		for _, s := range w.seqs {
			if s.slot == slot {
				return s, commonPrefix(s.h, hashes)
			}
		}
		if len(w.seqs) < slots {
			return nil, 0
		}
		old := w.lru(nil, true)
		if old == nil {
			old = w.lru(nil, false)
		}
		return old, commonPrefix(old.h, hashes)
	}
	var best *seq
	bestN := 0
	for _, s := range w.seqs {
		if n := commonPrefix(s.h, hashes); best == nil || n > bestN || n == bestN && s.used < best.used {
			best, bestN = s, n
		}
	}
	if bestN == 0 && len(w.seqs) < slots {
		return nil, 0 // a free slot
	}
	return best, bestN
}

// lru is w's least recently recorded sequence other than keep (of no known
// slot when unslotted), or nil.
func (w *worker) lru(keep *seq, unslotted bool) *seq {
	var old *seq
	for _, s := range w.seqs {
		if s != keep && (!unslotted || s.slot < 0) && (old == nil || s.used < old.used) {
			old = s
		}
	}
	return old
}

// setLocked makes s hold hashes, of which it holds the first common already.
func (x *Index) setLocked(s *seq, hashes []uint64, common int) {
	x.truncateLocked(s, common)
	if cap(s.h) < len(hashes) || cap(s.h) > 4*len(hashes)+16 {
		h := make([]uint64, common, len(hashes))
		copy(h, s.h)
		s.h = h
	}
	s.h = append(s.h, hashes[common:]...)
	w := s.w
	for _, h := range hashes[common:] {
		if w.held[h]++; w.held[h] == 1 {
			x.anyone[h]++
		}
	}
	x.blocks += len(hashes) - common
	w.peak = max(w.peak, len(w.held))
	x.anyonePeak = max(x.anyonePeak, len(x.anyone))
}

// truncateLocked drops the blocks of s past n.
func (x *Index) truncateLocked(s *seq, n int) {
	if n >= len(s.h) {
		return
	}
	w := s.w
	for _, h := range s.h[n:] {
		if decrement(w.held, h) {
			decrement(x.anyone, h)
		}
	}
	x.blocks -= len(s.h) - n
	s.h = s.h[:n]
	w.held, w.peak = shrink(w.held, w.peak)
	x.anyone, x.anyonePeak = shrink(x.anyone, x.anyonePeak)
}

// decrement counts one holder of h less and reports whether none is left.
func decrement(m map[uint64]int32, h uint64) bool {
	if c := m[h]; c > 1 {
		m[h] = c - 1
		return false
	}
	delete(m, h)
	return true
}

// shrink rebuilds a map that has shrunk a lot (a map keeps its buckets), so
// that memory follows what is held, not what once was.
func shrink(m map[uint64]int32, peak int) (map[uint64]int32, int) {
	if peak <= 1024 || len(m)*4 >= peak {
		return m, peak
	}
	n := make(map[uint64]int32, len(m))
	for h, c := range m {
		n[h] = c
	}
	return n, len(n)
}

// removeLocked stops tracking s; a worker left with no sequence goes.
func (x *Index) removeLocked(s *seq) {
	x.truncateLocked(s, 0)
	x.unlink(s)
	w := s.w
	for i, o := range w.seqs {
		if o == s {
			last := len(w.seqs) - 1
			w.seqs[i] = w.seqs[last]
			w.seqs[last] = nil
			w.seqs = w.seqs[:last]
			break
		}
	}
	x.seqs--
	s.w = nil
	if len(w.seqs) == 0 {
		delete(x.workers, w.id)
	}
}

func (x *Index) pushFront(s *seq) {
	s.prev, s.next = &x.lru, x.lru.next
	s.prev.next, s.next.prev = s, s
}

func (x *Index) unlink(s *seq) {
	if s.prev != nil {
		s.prev.next, s.next.prev = s.next, s.prev
	}
	s.prev, s.next = nil, nil
}

// Observe notes that workerID reused observed leading blocks of hashes (its
// cached_tokens through BlocksFor) where the Index predicted it held more:
// whatever its sequences hold of hashes past observed+Tolerance blocks is
// dropped (and what they chained on it). It returns the prediction, what
// Lookup would have said before. Only a request that could use the cache
// (cache_prompt not false) tells anything.
func (x *Index) Observe(workerID string, hashes []uint64, observed int) (predicted int) {
	hashes = x.clip(hashes)
	x.mu.Lock()
	defer x.mu.Unlock()
	w := x.workers[workerID]
	if w == nil {
		return 0
	}
	predicted = holds(w.held, hashes)
	keep := min(max(observed, 0), len(hashes))
	keep = min(keep+Tolerance, len(hashes))
	if predicted <= keep {
		return predicted
	}
	// keep >= 1 here (predicted > keep >= min(Tolerance, len(hashes))), so
	// no sequence is left empty.
	for _, s := range w.seqs {
		if commonPrefix(s.h, hashes) > keep {
			x.truncateLocked(s, keep)
		}
	}
	return predicted
}

// Forget drops everything tracked for workerID: it restarted, died or left.
func (x *Index) Forget(workerID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	w := x.workers[workerID]
	if w == nil {
		return
	}
	for len(w.seqs) > 0 {
		x.removeLocked(w.seqs[len(w.seqs)-1])
	}
}

// Sequences returns how many slots of workerID the Index tracks a cached
// sequence for (0 for a worker it does not know).
func (x *Index) Sequences(workerID string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if w := x.workers[workerID]; w != nil {
		return len(w.seqs)
	}
	return 0
}

// Stats counts what the Index holds.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return Stats{Blocks: x.blocks, Sequences: x.seqs, Workers: len(x.workers), Models: len(x.ratios)}
}

// Learn folds one observation into model's tokens-per-byte ratio: a request
// whose stream was streamBytes long had promptTokens prompt tokens. An
// observation with either at most 0 is ignored; the ratio is kept within
// [1/64, 4] tokens a byte.
func (x *Index) Learn(model string, streamBytes, promptTokens int) {
	if streamBytes <= 0 || promptTokens <= 0 {
		return
	}
	r := min(max(float64(promptTokens)/float64(streamBytes), minTokensPerByte), maxTokensPerByte)
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.ratios[model]
	switch {
	case ok:
		x.ratios[model] = old + learnWeight*(r-old)
	case len(x.ratios) < maxModels:
		x.ratios[model] = r
	}
}

func (x *Index) ratio(model string) float64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if r, ok := x.ratios[model]; ok {
		return r
	}
	return DefaultTokensPerByte
}

// Tokens is how many tokens blocks blocks of model's stream are expected to
// hold (0 for blocks <= 0, at most math.MaxInt32).
func (x *Index) Tokens(model string, blocks int) int {
	if blocks <= 0 {
		return 0
	}
	return clampInt(float64(blocks) * float64(x.cfg.BlockBytes) * x.ratio(model))
}

// BlocksFor is how many whole blocks of model's stream tokens tokens are
// expected to cover, rounded down (0 for tokens <= 0, at most
// math.MaxInt32).
func (x *Index) BlocksFor(model string, tokens int) int {
	if tokens <= 0 {
		return 0
	}
	return clampInt(float64(tokens) / (float64(x.cfg.BlockBytes) * x.ratio(model)))
}

func clampInt(f float64) int {
	if !(f < math.MaxInt32) {
		return math.MaxInt32
	}
	return int(f)
}
