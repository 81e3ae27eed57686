package data

import (
	"fmt"

	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// DefaultTokenizerSample caps the training text of a tokenizer: 8 MB of
// the Go corpus trains the 4096-token tokenizer in a few seconds on two
// cores, and more text barely changes the merges.
const DefaultTokenizerSample = 8 << 20

// TrainTokenizer trains a byte-level BPE tokenizer with vocabSize tokens on
// a deterministic sample of the train split of c: every k-th train document,
// with k chosen so the sample spreads over the whole corpus, until maxBytes
// of text (maxBytes <= 0 means DefaultTokenizerSample).
func TrainTokenizer(c *Corpus, split *Split, vocabSize int, maxBytes int64) (*tokenizer.Tokenizer, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultTokenizerSample
	}
	stride := max(1, (c.Bytes()+maxBytes-1)/maxBytes)
	tr := tokenizer.NewTrainer()
	var ord int64
	keep := func(source string, index int) bool {
		if split.IsVal(source, index) {
			return false
		}
		ord++
		return (ord-1)%stride == 0
	}
	err := c.EachWhere(keep, func(d Document) error {
		tr.Add(d.Text)
		if tr.Bytes() >= maxBytes {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("train tokenizer: %w", err)
	}
	return tr.Train(vocabSize)
}
