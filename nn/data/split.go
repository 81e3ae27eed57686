package data

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
)

// DefaultValFraction is the share of documents the validation split gets by
// default: 1% gives the Go corpus about 65 files (~1 MB), enough for a
// stable validation loss and small enough to cost little training text.
const DefaultValFraction = 0.01

// Split assigns every document of a corpus to train or validation by a hash
// of its identity (source name and index in the file), so the assignment of
// a document never depends on the other documents, the machine or the
// iteration order. When the hash rule would leave validation empty in a
// corpus of two or more documents, the document with the smallest hash goes
// to validation instead, so tiny corpora still get a validation set.
type Split struct {
	// Fraction is the validation share in [0, 1).
	Fraction float64
	// Train and Val count the documents on each side.
	Train, Val int

	forced    string
	forcedIdx int
	hasForced bool
}

// docHash maps a document identity to a uniform number in [0, 1).
func docHash(source string, index int) float64 {
	h := fnv.New64a()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(index)))
	x := h.Sum64()
	// splitmix64 finaliser: FNV's high bits are weak for short inputs.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// NewSplit computes the split of c with the given validation fraction. It
// only hashes document identities; it reads no file.
func NewSplit(c *Corpus, fraction float64) (*Split, error) {
	if math.IsNaN(fraction) || fraction < 0 || fraction >= 1 {
		return nil, fmt.Errorf("validation fraction %v: want a number in [0, 1)", fraction)
	}
	s := &Split{Fraction: fraction}
	best := math.Inf(1)
	for _, src := range c.Sources {
		for i := 0; i < src.Docs; i++ {
			h := docHash(src.Name, i)
			if h < fraction {
				s.Val++
			} else {
				s.Train++
			}
			if h < best {
				best, s.forced, s.forcedIdx = h, src.Name, i
			}
		}
	}
	if fraction > 0 && s.Val == 0 && s.Train >= 2 {
		s.hasForced = true
		s.Val, s.Train = 1, s.Train-1
	}
	return s, nil
}

// IsVal reports whether the document (source, index) is in the validation
// split.
func (s *Split) IsVal(source string, index int) bool {
	if s.hasForced {
		return source == s.forced && index == s.forcedIdx
	}
	return docHash(source, index) < s.Fraction
}

// String describes the split for logs and for the token-cache key.
func (s *Split) String() string {
	return fmt.Sprintf("split val=%g train=%d docs val=%d docs", s.Fraction, s.Train, s.Val)
}
