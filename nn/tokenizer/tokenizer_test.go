package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleText is a small Go-like corpus for training test tokenizers.
func sampleText(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"func", "return", "if", "err", "nil", "x", "y", "int", "string", "for", "range", "héllo", "日本"}
	for range 300 { // random identifiers give plenty of pairs to merge
		w := make([]byte, 2+rng.IntN(7))
		for i := range w {
			w[i] = "abcdefghijklmnop0123_"[rng.IntN(21)]
		}
		words = append(words, string(w))
	}
	var docs [][]byte
	for d := 0; d < n; d++ {
		var b strings.Builder
		for i := 0; i < 200; i++ {
			b.WriteString(words[rng.IntN(len(words))])
			switch rng.IntN(6) {
			case 0:
				b.WriteString("(")
			case 1:
				b.WriteString(") {\n\t")
			case 2:
				b.WriteString(" != ")
			default:
				b.WriteString(" ")
			}
		}
		docs = append(docs, []byte(b.String()))
	}
	return docs
}

func trainSample(t *testing.T, vocab int) *Tokenizer {
	t.Helper()
	tr := NewTrainer()
	for _, d := range sampleText(20) {
		tr.Add(d)
	}
	tok, err := tr.Train(vocab)
	require.NoError(t, err)
	require.Equal(t, vocab, tok.VocabSize())
	return tok
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		switch rng.IntN(3) {
		case 0:
			b[i] = byte(rng.IntN(256))
		case 1:
			b[i] = " \n\tabcfunretx(){}"[rng.IntN(17)]
		default:
			b[i] = byte('a' + rng.IntN(26))
		}
	}
	return b
}

func chunkList(s string) []string {
	var out []string
	chunks([]byte(s), func(c []byte) { out = append(out, string(c)) })
	return out
}

func TestTokenizerChunks(t *testing.T) {
	assert.Equal(t, []string{"func", " main", "()", " {", "\n\t", "return", " x", "+", "1", "\n", "}", "  \n"},
		chunkList("func main() {\n\treturn x+1\n}  \n"))
	assert.Equal(t, []string{"a", "  ", " b", "\t\t", "c", "\n ", " é", " ü", "!?"},
		chunkList("a   b\t\tc\n  é ü!?"))
	assert.Equal(t, []string{" "}, chunkList(" "))
	assert.Equal(t, []string{"\t ", " x", "\t"}, chunkList("\t  x\t"))
	assert.Nil(t, chunkList(""))
	long := strings.Repeat("a", 3*MaxChunk+5)
	assert.Equal(t, []string{long[:MaxChunk], long[:MaxChunk], long[:MaxChunk], long[:5]}, chunkList(long))
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := randomBytes(rng, rng.IntN(300))
		assert.Equal(t, string(b), strings.Join(chunkList(string(b)), ""))
	}
}

func TestTokenizerByteLevelMapping(t *testing.T) {
	// Known points of GPT-2's table.
	assert.Equal(t, 'Ġ', byteRune[' '])
	assert.Equal(t, 'Ċ', byteRune['\n'])
	assert.Equal(t, 'A', byteRune['A'])
	assert.Equal(t, rune(0x100), byteRune[0])
	assert.Equal(t, rune(0x143), byteRune[0xad])
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	back, err := fromByteLevel(byteLevel(all))
	require.NoError(t, err)
	assert.Equal(t, all, back)
	_, err = fromByteLevel("\u4e00")
	assert.Error(t, err)
}

func TestTokenizerTrainSmall(t *testing.T) {
	tr := NewTrainer()
	tr.Add([]byte("ab ab ab cd"))
	tok, err := tr.Train(MinVocab + 3)
	require.NoError(t, err)
	// (a,b) x3 first; then (' ', ab) x2; then the count-1 tie goes to the
	// lowest ids: (' ', c) before (c, d).
	assert.Equal(t, []Merge{{'a', 'b', 257}, {' ', 257, 258}, {' ', 'c', 259}}, tok.Merges())
	assert.Equal(t, []uint32{257, 258, 258, 259, 'd'}, tok.Encode(nil, []byte("ab ab ab cd")))

	_, err = tr.Train(MinVocab + 10)
	assert.ErrorContains(t, err, "too small")
	_, err = tr.Train(256)
	assert.ErrorContains(t, err, "below the minimum")
}

func TestTokenizerTrainDeterministic(t *testing.T) {
	docs := sampleText(10)
	a, b := NewTrainer(), NewTrainer()
	for i := range docs {
		a.Add(docs[i])
		b.Add(docs[len(docs)-1-i])
	}
	ta, err := a.Train(400)
	require.NoError(t, err)
	tb, err := b.Train(400)
	require.NoError(t, err)
	assert.Equal(t, ta.Merges(), tb.Merges())
	ja, _ := ta.MarshalJSON()
	jb, _ := tb.MarshalJSON()
	assert.Equal(t, ja, jb)
}

// encodeSlow is the reference BPE: apply every merge, in rank order, to
// every chunk.
func encodeSlow(tok *Tokenizer, text []byte) []uint32 {
	var out []uint32
	chunks(text, func(c []byte) {
		var w []uint32
		for _, b := range c {
			w = append(w, tok.byteID[b])
		}
		for _, m := range tok.merges {
			w = mergeAll(w, m.A, m.B, m.ID)
		}
		out = append(out, w...)
	})
	return out
}

func TestTokenizerRoundTrip(t *testing.T) {
	trained := trainSample(t, 600)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tok := range []*Tokenizer{Bytes(), trained} {
		for i := range 300 {
			var text []byte
			switch i % 3 {
			case 0:
				text = randomBytes(rng, rng.IntN(500))
			case 1: // invalid UTF-8 and stray continuation bytes
				text = append([]byte("héllo\xff\xfe\x80 wörld \xc3"), randomBytes(rng, 20)...)
			default:
				text = sampleText(1)[0][:rng.IntN(1000)]
			}
			ids := tok.Encode(nil, text)
			for _, id := range ids {
				require.NotEqual(t, tok.EOT(), id)
				require.Less(t, int(id), tok.VocabSize())
			}
			got, err := tok.Decode(nil, ids)
			require.NoError(t, err)
			require.Equal(t, string(text), string(got))
			if tok == trained {
				require.Equal(t, encodeSlow(tok, text), ids)
			}
		}
	}
	// A run far longer than MaxChunk.
	long := bytes.Repeat([]byte("ab"), 10000)
	got, err := trained.Decode(nil, trained.Encode(nil, long))
	require.NoError(t, err)
	assert.Equal(t, long, got)
	// Training compresses its own kind of text.
	doc := sampleText(1)[0]
	assert.Less(t, len(trained.Encode(nil, doc)), len(doc)*2/3)
	_, err = trained.Decode(nil, []uint32{600})
	assert.ErrorContains(t, err, "outside vocabulary")
	eot, err := trained.Decode(nil, []uint32{EOT})
	require.NoError(t, err)
	assert.Equal(t, EOTText, string(eot))
}

func TestTokenizerConcurrentEncode(t *testing.T) {
	tok := trainSample(t, 500)
	docs := sampleText(8)
	want := make([][]uint32, len(docs))
	for i, d := range docs {
		want[i] = encodeSlow(tok, d)
	}
	var wg sync.WaitGroup
	got := make([][]uint32, len(docs))
	for i, d := range docs {
		wg.Go(func() { got[i] = tok.Encode(nil, d) })
	}
	wg.Wait()
	assert.Equal(t, want, got)
}

func TestTokenizerBytes(t *testing.T) {
	tok := Bytes()
	assert.Equal(t, 257, tok.VocabSize())
	assert.Equal(t, uint32(EOT), tok.EOT())
	assert.Equal(t, []uint32{'h', 'i', 0xff}, tok.Encode(nil, []byte("hi\xff")))
}

func TestTokenizerSaveLoad(t *testing.T) {
	tok := trainSample(t, 500)
	path := filepath.Join(t.TempDir(), "tok.json")
	require.NoError(t, tok.Save(path))
	back, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, tok.Merges(), back.Merges())
	assert.Equal(t, tok.vocab, back.vocab)
	text := sampleText(1)[0]
	assert.Equal(t, tok.Encode(nil, text), back.Encode(nil, text))

	_, err = Load(filepath.Join(t.TempDir(), "missing.json"))
	assert.Error(t, err)
	for name, bad := range map[string]string{
		"not json":      "{",
		"wrong format":  `{"format":"x","version":1}`,
		"wrong version": `{"format":"step-gpu-bpe","version":9}`,
		"bad merge":     `{"format":"step-gpu-bpe","version":1,"eot":0,"vocab":["<|endoftext|>"],"merges":[[1,2]]}`,
	} {
		_, err := Unmarshal([]byte(bad))
		assert.Error(t, err, name)
	}
}

func TestTokenizerHF(t *testing.T) {
	tok := trainSample(t, 500)
	b, err := tok.MarshalHF()
	require.NoError(t, err)
	var f map[string]any
	require.NoError(t, json.Unmarshal(b, &f))
	model := f["model"].(map[string]any)
	assert.Equal(t, "BPE", model["type"])
	assert.Len(t, model["vocab"], 500)
	assert.Len(t, model["merges"], 500-MinVocab)
	vocab := model["vocab"].(map[string]any)
	assert.Equal(t, float64(' '), vocab["Ġ"])
	assert.Equal(t, float64(EOT), vocab[EOTText])
	m0 := tok.Merges()[0]
	assert.Equal(t, fmt.Sprintf("%s %s", byteLevel(tok.Token(m0.A)), byteLevel(tok.Token(m0.B))), model["merges"].([]any)[0])
	assert.Equal(t, "ByteLevel", f["decoder"].(map[string]any)["type"])

	back, err := UnmarshalHF(b)
	require.NoError(t, err)
	assert.Equal(t, tok.Merges(), back.Merges())
	text := sampleText(1)[0]
	assert.Equal(t, tok.Encode(nil, text), back.Encode(nil, text))

	// Newer files write merges as pairs.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	var pairs [][2]string
	for _, m := range raw["model"].(map[string]any)["merges"].([]any) {
		a, c, _ := strings.Cut(m.(string), " ")
		pairs = append(pairs, [2]string{a, c})
	}
	raw["model"].(map[string]any)["merges"] = pairs
	b2, err := json.Marshal(raw)
	require.NoError(t, err)
	back2, err := UnmarshalHF(b2)
	require.NoError(t, err)
	assert.Equal(t, tok.Merges(), back2.Merges())

	path := filepath.Join(t.TempDir(), "tokenizer.json")
	require.NoError(t, tok.ExportHF(path))
	back3, err := ImportHF(path)
	require.NoError(t, err)
	assert.Equal(t, tok.Merges(), back3.Merges())

	_, err = UnmarshalHF([]byte(`{"model":{"type":"WordPiece"}}`))
	assert.ErrorContains(t, err, "BPE")
}
