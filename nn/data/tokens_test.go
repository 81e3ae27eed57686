package data

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/step-gpu/step-gpu/nn/tokenizer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// textCorpus writes n small Go-like documents into a directory and opens it.
func textCorpus(t *testing.T, n int) (*Corpus, string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	words := []string{"func", "return", "err", "nil", "if", "for", "x", "y", "int", "(", ")", "{", "}", "\n\t", " ", " := ", "0"}
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "// file %d\n", i)
		for range 50 + rng.IntN(100) {
			b.WriteString(words[rng.IntN(len(words))])
		}
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%03d.go", i)), b.String())
	}
	c, err := Open(dir)
	require.NoError(t, err)
	return c, dir
}

// readTokens loads a token file and decodes its documents (cut at EOT).
func readTokens(t *testing.T, path string, tok *tokenizer.Tokenizer) []string {
	t.Helper()
	tf, err := OpenTokens(path)
	require.NoError(t, err)
	defer tf.Close()
	all, err := tf.Read(nil, 0, tf.Len())
	require.NoError(t, err)
	var docs []string
	var cur []uint32
	for _, id := range all {
		if id == tok.EOT() {
			b, err := tok.Decode(nil, cur)
			require.NoError(t, err)
			docs = append(docs, string(b))
			cur = cur[:0]
			continue
		}
		cur = append(cur, id)
	}
	require.Empty(t, cur, "token stream must end with EOT")
	assert.Equal(t, int64(len(docs)), tf.Docs)
	assert.Equal(t, tok.VocabSize(), tf.Vocab)
	return docs
}

func TestTokensCache(t *testing.T) {
	c, dir := textCorpus(t, 40)
	split, err := NewSplit(c, 0.1)
	require.NoError(t, err)
	tok, err := TrainTokenizer(c, split, 300, 0)
	require.NoError(t, err)
	cacheDir := filepath.Join(t.TempDir(), "cache")

	var last, total int64
	calls := 0
	tc, err := CacheTokens(cacheDir, c, split, tok, func(done, tot int64) {
		require.GreaterOrEqual(t, done, last)
		last, total = done, tot
		calls++
	})
	require.NoError(t, err)
	assert.False(t, tc.Reused)
	assert.Equal(t, c.Docs(), calls)
	assert.Equal(t, c.Bytes(), last)
	assert.Equal(t, c.Bytes(), total)

	// The files hold exactly the documents of each side, in corpus order.
	var wantTrain, wantVal []string
	require.NoError(t, c.Each(func(d Document) error {
		if split.IsVal(d.Source, d.Index) {
			wantVal = append(wantVal, string(d.Text))
		} else {
			wantTrain = append(wantTrain, string(d.Text))
		}
		return nil
	}))
	require.NotEmpty(t, wantVal)
	assert.Equal(t, wantTrain, readTokens(t, tc.Train, tok))
	assert.Equal(t, wantVal, readTokens(t, tc.Val, tok))
	entries, err := os.ReadDir(cacheDir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary files left behind")

	// Same inputs: reused, untouched.
	info, err := os.Stat(tc.Train)
	require.NoError(t, err)
	tc2, err := CacheTokens(cacheDir, c, split, tok, nil)
	require.NoError(t, err)
	assert.True(t, tc2.Reused)
	info2, err := os.Stat(tc.Train)
	require.NoError(t, err)
	assert.Equal(t, info.ModTime(), info2.ModTime())

	// Another tokenizer: stale, rebuilt.
	tc3, err := CacheTokens(cacheDir, c, split, tokenizer.Bytes(), nil)
	require.NoError(t, err)
	assert.False(t, tc3.Reused)
	assert.Equal(t, wantTrain, readTokens(t, tc.Train, tokenizer.Bytes()))

	// An edited corpus file: stale, rebuilt with the new text.
	first := c.Sources[0].Path
	writeFile(t, first, "edited\n")
	c2, err := Open(dir)
	require.NoError(t, err)
	tc4, err := CacheTokens(cacheDir, c2, split, tok, nil)
	require.NoError(t, err)
	assert.False(t, tc4.Reused)
	both := append(readTokens(t, tc.Train, tok), readTokens(t, tc.Val, tok)...)
	assert.Contains(t, both, "edited\n")

	// A truncated cache file: detected, rebuilt.
	full, err := os.ReadFile(tc.Train)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tc.Train, full[:len(full)-3], 0o644))
	_, err = OpenTokens(tc.Train)
	assert.ErrorContains(t, err, "truncated")
	tc5, err := CacheTokens(cacheDir, c2, split, tok, nil)
	require.NoError(t, err)
	assert.False(t, tc5.Reused)
	tf, err := OpenTokens(tc.Train)
	require.NoError(t, err)
	require.NoError(t, tf.Close())
}

func TestTokensWide(t *testing.T) {
	assert.Equal(t, uint32(2), tokenWidth(65536))
	assert.Equal(t, uint32(4), tokenWidth(65537))
	path := filepath.Join(t.TempDir(), "wide.tok")
	w, err := newTokenWriter(path, tokenHeader{Width: 4, Vocab: 100000})
	require.NoError(t, err)
	want := []uint32{0, 65535, 65536, 99999, 7}
	require.NoError(t, w.write(want))
	require.NoError(t, w.commit())
	tf, err := OpenTokens(path)
	require.NoError(t, err)
	defer tf.Close()
	got, err := tf.Read(nil, 0, tf.Len())
	require.NoError(t, err)
	assert.Equal(t, want, got)
	got, err = tf.Read(got[:0], 2, 2)
	require.NoError(t, err)
	assert.Equal(t, want[2:4], got)
	_, err = tf.Read(nil, 4, 2)
	assert.ErrorContains(t, err, "outside")

	bad := filepath.Join(t.TempDir(), "bad.tok")
	require.NoError(t, os.WriteFile(bad, []byte("not a token file at all, but long enough for a header ........"), 0o644))
	_, err = OpenTokens(bad)
	assert.Error(t, err)
	_, err = OpenTokens(filepath.Join(t.TempDir(), "missing.tok"))
	assert.Error(t, err)
}

// seqTokens writes a token file holding 0, 1, ..., n-1.
func seqTokens(t *testing.T, n int) *Tokens {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seq.tok")
	w, err := newTokenWriter(path, tokenHeader{Width: 2, Vocab: 65536})
	require.NoError(t, err)
	toks := make([]uint32, n)
	for i := range toks {
		toks[i] = uint32(i)
	}
	require.NoError(t, w.write(toks))
	require.NoError(t, w.commit())
	tf, err := OpenTokens(path)
	require.NoError(t, err)
	t.Cleanup(func() { tf.Close() })
	return tf
}

// next reads the next batch of l.
func next(t *testing.T, l *Loader) []uint32 {
	t.Helper()
	b, err := l.Next(nil)
	require.NoError(t, err)
	return b
}

func TestLoaderWindows(t *testing.T) {
	tf := seqTokens(t, 23) // T=5: windows start at 0, 5, 10, 15: (23-1)/5 = 4
	l, err := NewLoader(tf, 3, 5, LoaderOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(4), l.Windows())
	assert.Equal(t, int64(1), l.Batches())
	got := next(t, l)
	assert.Equal(t, []uint32{0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 10, 11, 12, 13, 14, 15}, got)
	// The next batch wraps into epoch 1.
	got = next(t, l)
	assert.Equal(t, []uint32{15, 16, 17, 18, 19, 20, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10}, got)
	assert.Equal(t, int64(6), l.Cursor())
	assert.Equal(t, int64(1), l.Epoch())
	l.Reset()
	assert.Equal(t, []uint32{0, 1, 2, 3, 4, 5}, next(t, l)[:6])

	_, err = NewLoader(seqTokens(t, 5), 1, 5, LoaderOptions{})
	assert.ErrorContains(t, err, "fewer than one window")
	_, err = NewLoader(tf, 0, 5, LoaderOptions{})
	assert.Error(t, err)
	assert.Error(t, l.SetCursor(-1))
}

func TestLoaderShuffleResume(t *testing.T) {
	tf := seqTokens(t, 1000)
	const B, T = 4, 7 // 142 windows: epochs end mid-batch
	for _, opt := range []LoaderOptions{{}, {Shuffle: true, Seed: 42}} {
		ref, err := NewLoader(tf, B, T, opt)
		require.NoError(t, err)
		var want [][]uint32
		for range 100 { // about 2.8 epochs
			want = append(want, next(t, ref))
		}
		a, err := NewLoader(tf, B, T, opt)
		require.NoError(t, err)
		var got [][]uint32
		for range 37 {
			got = append(got, next(t, a))
		}
		cursor := a.Cursor()
		b, err := NewLoader(tf, B, T, opt) // a "restarted" run
		require.NoError(t, err)
		require.NoError(t, b.SetCursor(cursor))
		for range 63 {
			got = append(got, next(t, b))
		}
		assert.Equal(t, want, got, "shuffle=%v", opt.Shuffle)

		// Every epoch visits every window once.
		c, _ := NewLoader(tf, 1, T, opt)
		seen := map[uint32]bool{}
		for range c.Windows() {
			seen[next(t, c)[0]] = true
		}
		assert.Len(t, seen, int(c.Windows()))
	}
	s1, _ := NewLoader(tf, B, T, LoaderOptions{Shuffle: true, Seed: 1})
	s2, _ := NewLoader(tf, B, T, LoaderOptions{Shuffle: true, Seed: 2})
	assert.NotEqual(t, next(t, s1), next(t, s2))
}

func TestTokensGoSourceSample(t *testing.T) {
	c, err := OpenGoSource()
	require.NoError(t, err)
	c.Sources = c.Sources[:20]
	split, err := NewSplit(c, DefaultValFraction)
	require.NoError(t, err)
	tok, err := TrainTokenizer(c, split, 512, 0)
	require.NoError(t, err)
	require.NoError(t, c.Each(func(d Document) error {
		ids := tok.Encode(nil, d.Text)
		assert.Less(t, len(ids), len(d.Text)*7/10, d.Source) // 512 tokens compress Go about 2x
		back, err := tok.Decode(nil, ids)
		require.NoError(t, err)
		require.Equal(t, string(d.Text), string(back), d.Source)
		return nil
	}))
	tc, err := CacheTokens(t.TempDir(), c, split, tok, nil)
	require.NoError(t, err)
	train, err := OpenTokens(tc.Train)
	require.NoError(t, err)
	defer train.Close()
	assert.Greater(t, train.Len(), int64(1000))
}
