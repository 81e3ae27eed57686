package data

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeCorpus is a corpus of n one-document sources that exist only by name
// (NewSplit reads no file).
func fakeCorpus(n int) *Corpus {
	c := &Corpus{kind: "fake"}
	for i := range n {
		c.Sources = append(c.Sources, Source{Name: fmt.Sprintf("doc%04d.txt", i), Docs: 1})
	}
	return c
}

func valSet(s *Split, c *Corpus) map[string]bool {
	val := map[string]bool{}
	for _, src := range c.Sources {
		for i := range src.Docs {
			if s.IsVal(src.Name, i) {
				val[fmt.Sprintf("%s#%d", src.Name, i)] = true
			}
		}
	}
	return val
}

func TestSplitDeterministic(t *testing.T) {
	c := fakeCorpus(5000)
	a, err := NewSplit(c, 0.05)
	require.NoError(t, err)
	b, err := NewSplit(c, 0.05)
	require.NoError(t, err)
	va := valSet(a, c)
	assert.Equal(t, va, valSet(b, c))
	assert.Equal(t, len(va), a.Val)
	assert.Equal(t, 5000, a.Train+a.Val)
	// 5% of 5000 is 250 +- 15 (one standard deviation); allow 4.
	assert.InDelta(t, 250, a.Val, 60)

	// A document's side depends only on its identity, not on the others.
	small := &Corpus{Sources: c.Sources[1000:2000]}
	s, err := NewSplit(small, 0.05)
	require.NoError(t, err)
	for k := range valSet(s, small) {
		assert.True(t, va[k], k)
	}
	// Documents inside one file are told apart by index.
	multi := &Corpus{Sources: []Source{{Name: "web.jsonl", Docs: 1000}}}
	s, err = NewSplit(multi, 0.1)
	require.NoError(t, err)
	assert.InDelta(t, 100, s.Val, 40)
}

func TestSplitTiny(t *testing.T) {
	for n, wantVal := range map[int]int{1: 0, 2: 1, 3: 1, 10: 1} {
		c := fakeCorpus(n)
		s, err := NewSplit(c, 0.01)
		require.NoError(t, err)
		assert.Equal(t, wantVal, s.Val, "n=%d", n)
		assert.Len(t, valSet(s, c), wantVal, "n=%d", n)
		again, _ := NewSplit(c, 0.01)
		assert.Equal(t, valSet(s, c), valSet(again, c))
	}
	s, err := NewSplit(fakeCorpus(10), 0)
	require.NoError(t, err)
	assert.Equal(t, 0, s.Val)
	for _, bad := range []float64{-0.1, 1, 2} {
		_, err := NewSplit(fakeCorpus(3), bad)
		assert.Error(t, err)
	}
}

func TestSplitRealFiles(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d.txt", i)), fmt.Sprintf("text %d", i))
	}
	c, err := Open(dir)
	require.NoError(t, err)
	s, err := NewSplit(c, DefaultValFraction)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, s.Val, 1)
	assert.Equal(t, 50, s.Train+s.Val)
}
