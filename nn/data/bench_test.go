package data

import (
	"testing"

	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// goSourceTokenizer opens the default corpus and trains the default
// tokenizer on it.
func goSourceTokenizer(b *testing.B) (*Corpus, *Split, *tokenizer.Tokenizer) {
	b.Helper()
	c, err := OpenGoSource()
	if err != nil {
		b.Fatal(err)
	}
	split, err := NewSplit(c, DefaultValFraction)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := TrainTokenizer(c, split, tokenizer.DefaultVocab, 0)
	if err != nil {
		b.Fatal(err)
	}
	return c, split, tok
}

// BenchmarkTrainTokenizerGoSource trains the default 4096-token tokenizer on
// the default corpus (run with -benchtime=1x).
func BenchmarkTrainTokenizerGoSource(b *testing.B) {
	for b.Loop() {
		goSourceTokenizer(b)
	}
}

// BenchmarkCacheTokensGoSource tokenizes the whole default corpus into token
// files with the default tokenizer (run with -benchtime=1x).
func BenchmarkCacheTokensGoSource(b *testing.B) {
	c, split, tok := goSourceTokenizer(b)
	b.SetBytes(c.Bytes())
	dir := b.TempDir()
	var tc *TokenCache
	for b.Loop() {
		var err error
		if tc, err = CacheTokens(b.TempDir(), c, split, tok, nil); err != nil {
			b.Fatal(err)
		}
		dir = tc.Train
	}
	train, err := OpenTokens(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer train.Close()
	val, err := OpenTokens(tc.Val)
	if err != nil {
		b.Fatal(err)
	}
	defer val.Close()
	b.ReportMetric(float64(train.Len()), "train-tokens")
	b.ReportMetric(float64(val.Len()), "val-tokens")
	b.ReportMetric(float64(c.Bytes())/float64(train.Len()+val.Len()), "bytes/token")
}
