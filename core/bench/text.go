package bench

import (
	"math/rand/v2"
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

// Text returns n words of pseudo-random text made from seed: the same seed
// and n give the same text, and a shorter text is a prefix of a longer one.
func Text(seed uint64, n int) string {
	var b strings.Builder
	appendWords(&b, rand.New(rand.NewPCG(seed, 0x7e47)), n)
	return b.String()
}

func appendWords(b *strings.Builder, rng *rand.Rand, n int) {
	for i := range n {
		if i > 0 || b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
}

// uniqueText is n words (at least one) that differ from those of any other
// index from the first word on, for indexes less than len(words)² apart:
// the index written in base len(words), least significant digit first,
// then pseudo-random words of (seed, index).
func uniqueText(seed uint64, index uint64, n int) string {
	n = max(n, 1)
	var b strings.Builder
	d := index
	for i := 0; i < 2 && i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[d%uint64(len(words))])
		d /= uint64(len(words))
	}
	appendWords(&b, rand.New(rand.NewPCG(seed, index)), n-min(n, 2))
	return b.String()
}
