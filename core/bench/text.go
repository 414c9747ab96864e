package bench

import (
	"math/rand/v2"
	"slices"
	"strings"
)

// words are what prompts are made of: common English words, one or two
// tokens each in most vocabularies.
var words = strings.Fields(`time year people way day man thing woman life child world school state family
student group country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye job word
business issue side kind head house service friend father power hour game line end member law car city
community name president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air teacher force
education river mountain garden window letter market paper music light table field voice stone bridge`)

// textRNG draws the words of a shared prefix.
func textRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x7e47)) }

// sizer sizes text in tokens: cost[i] is what words[i] adds to a prompt
// after a space (from the calibration; DefaultTokensPerWord each without
// one). A text's tokens are the sum of its words' costs; what a request
// has besides (template, BOS, a segment's first word costing more than it
// would after a space) is the calibration's overhead.
type sizer struct{ cost []float64 }

func uniformSizer(tpw float64) sizer {
	c := make([]float64, len(words))
	for i := range c {
		c[i] = tpw
	}
	return sizer{c}
}

// text writes the words head (indexes into words), then words drawn from
// rng, as long as each next word brings the text's cost closer to budget
// (the first word always). A text for a smaller budget is a prefix of one
// for a larger budget. It returns the text and its cost.
func (z sizer) text(head []int, rng *rand.Rand, budget float64) (string, float64) {
	var b strings.Builder
	spent := 0.0
	add := func(w int) bool {
		c := z.cost[w]
		if b.Len() > 0 {
			if spent+c/2 > budget {
				return false
			}
			b.WriteByte(' ')
		}
		b.WriteString(words[w])
		spent += c
		return true
	}
	for _, w := range head {
		if !add(w) {
			return b.String(), spent
		}
	}
	for add(rng.IntN(len(words))) {
	}
	return b.String(), spent
}

// shared is the shared prefix of seed, about budget tokens.
func (z sizer) shared(seed uint64, budget float64) (string, float64) {
	return z.text(nil, textRNG(seed), budget)
}

// unique is about budget tokens of text (at least one word) that differs
// from that of any other index from the first word on, for indexes less
// than len(words)² apart: the index written in base len(words), least
// significant digit first, then pseudo-random words of (seed, index).
func (z sizer) unique(seed, index uint64, budget float64) string {
	n := uint64(len(words))
	s, _ := z.text([]int{int(index % n), int(index / n % n)}, rand.New(rand.NewPCG(seed, index)), budget)
	return s
}

// textCost is what text's words cost.
func (z sizer) textCost(text string) float64 {
	sum := 0.0
	for w := range strings.FieldsSeq(text) {
		if i := slices.Index(words, w); i >= 0 {
			sum += z.cost[i]
		}
	}
	return sum
}

// mean is a word's mean cost.
func (z sizer) mean() float64 {
	sum := 0.0
	for _, c := range z.cost {
		sum += c
	}
	return sum / float64(len(z.cost))
}
