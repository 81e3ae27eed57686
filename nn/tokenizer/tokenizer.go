package tokenizer

import (
	"fmt"
	"sync"
)

// EOT is the id of the end-of-document token in tokenizers built by this
// package; the trainer's token stream has EOT after every document.
const EOT = 256

// EOTText is the text of the end-of-document token.
const EOTText = "<|endoftext|>"

// MinVocab is the smallest vocabulary a BPE tokenizer can have: the 256
// bytes plus EOT.
const MinVocab = 257

// DefaultVocab is the default vocabulary size V of a trained tokenizer.
const DefaultVocab = 4096

// MaxChunk bounds the length of one pre-tokenization chunk, so encoding a
// chunk costs at most O(MaxChunk^2) even on a megabyte-long line.
const MaxChunk = 256

// Merge is one learned BPE merge: tokens A and B next to each other in a
// chunk become token ID.
type Merge struct {
	A, B, ID uint32
}

// rank is a merge's priority (lower merges first) and its result.
type rank struct {
	rank int32
	id   uint32
}

func pairKey(a, b uint32) uint64 { return uint64(a)<<32 | uint64(b) }

// Tokenizer is a byte-level BPE tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	vocab  [][]byte // id -> bytes; the EOT entry holds EOTText
	byteID [256]uint32
	merges []Merge // in rank order
	ranks  map[uint64]rank
	eot    uint32
	pool   sync.Pool // of *encoder
}

// Bytes returns the plain-bytes tokenizer: token i is byte i and EOT is 256,
// so V = 257.
func Bytes() *Tokenizer {
	t, err := build(nil)
	if err != nil {
		panic(err) // cannot happen: no merges to check
	}
	return t
}

// build makes a tokenizer with the standard layout (bytes, EOT, merges).
func build(merges [][2]uint32) (*Tokenizer, error) {
	vocab := make([][]byte, MinVocab, MinVocab+len(merges))
	for i := range 256 {
		vocab[i] = []byte{byte(i)}
	}
	vocab[EOT] = []byte(EOTText)
	return newTokenizer(vocab, EOT, merges)
}

// newTokenizer checks and indexes a vocabulary and its ordered merges. Each
// merge's result is the token whose bytes are the concatenation of the pair;
// merges may only create tokens that are not yet in the vocabulary when they
// are appended at the end, in order.
func newTokenizer(vocab [][]byte, eot uint32, pairs [][2]uint32) (*Tokenizer, error) {
	t := &Tokenizer{vocab: vocab, eot: eot, ranks: make(map[uint64]rank, len(pairs))}
	if int(eot) >= len(vocab) {
		return nil, fmt.Errorf("end-of-document token %d outside vocabulary of %d", eot, len(vocab))
	}
	byID := make(map[string]uint32, len(vocab)+len(pairs))
	for i := range t.byteID {
		t.byteID[i] = ^uint32(0)
	}
	for id, tok := range vocab {
		if uint32(id) == eot {
			continue
		}
		if len(tok) == 0 {
			return nil, fmt.Errorf("token %d is empty", id)
		}
		if prev, dup := byID[string(tok)]; dup {
			return nil, fmt.Errorf("tokens %d and %d have the same bytes %q", prev, id, tok)
		}
		byID[string(tok)] = uint32(id)
		if len(tok) == 1 {
			t.byteID[tok[0]] = uint32(id)
		}
	}
	for b, id := range t.byteID {
		if id == ^uint32(0) {
			return nil, fmt.Errorf("no token for byte 0x%02x", b)
		}
	}
	for r, p := range pairs {
		a, b := p[0], p[1]
		if int(a) >= len(t.vocab) || int(b) >= len(t.vocab) || a == eot || b == eot {
			return nil, fmt.Errorf("merge %d (%d, %d): token outside vocabulary or special", r, a, b)
		}
		joined := string(t.vocab[a]) + string(t.vocab[b])
		id, ok := byID[joined]
		if !ok {
			return nil, fmt.Errorf("merge %d (%d, %d): no token for %q", r, a, b, joined)
		}
		if _, dup := t.ranks[pairKey(a, b)]; dup {
			return nil, fmt.Errorf("merge %d (%d, %d) appears twice", r, a, b)
		}
		t.ranks[pairKey(a, b)] = rank{int32(r), id}
		t.merges = append(t.merges, Merge{a, b, id})
	}
	t.pool.New = func() any { return &encoder{cache: map[string][]uint32{}} }
	return t, nil
}

// VocabSize returns V, the number of token ids.
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// EOT returns the id of the end-of-document token.
func (t *Tokenizer) EOT() uint32 { return t.eot }

// Merges returns the learned merges in rank order. The caller must not
// modify the result.
func (t *Tokenizer) Merges() []Merge { return t.merges }

// Token returns the bytes of token id (EOTText for the end-of-document
// token). The caller must not modify the result.
func (t *Tokenizer) Token(id uint32) []byte { return t.vocab[id] }

// Decode appends the bytes of the tokens to dst and returns it. The EOT
// token decodes to EOTText; an id outside the vocabulary is an error.
func (t *Tokenizer) Decode(dst []byte, ids []uint32) ([]byte, error) {
	for i, id := range ids {
		if int(id) >= len(t.vocab) {
			return dst, fmt.Errorf("decode: token %d at position %d outside vocabulary of %d", id, i, len(t.vocab))
		}
		dst = append(dst, t.vocab[id]...)
	}
	return dst, nil
}

// Encode appends the tokens of text to dst and returns it. It never emits
// EOT; Decode(Encode(s)) == s for every byte string s.
func (t *Tokenizer) Encode(dst []uint32, text []byte) []uint32 {
	if len(t.merges) == 0 {
		for _, b := range text {
			dst = append(dst, t.byteID[b])
		}
		return dst
	}
	e := t.pool.Get().(*encoder)
	chunks(text, func(c []byte) { dst = e.chunk(t, dst, c) })
	t.pool.Put(e)
	return dst
}

// encoderCacheMax bounds an encoder's chunk cache; the Go corpus has about
// half a million distinct chunks, so a full cache costs tens of MB.
const encoderCacheMax = 1 << 20

// encoder holds one goroutine's chunk cache and scratch space.
type encoder struct {
	cache map[string][]uint32
	work  []uint32
}

// chunk appends the tokens of one chunk: start from bytes and apply the
// lowest-ranked merge present, all its occurrences left to right, until no
// merge applies (the same order training learned them in).
func (e *encoder) chunk(t *Tokenizer, dst []uint32, c []byte) []uint32 {
	if len(c) == 1 {
		return append(dst, t.byteID[c[0]])
	}
	if toks, ok := e.cache[string(c)]; ok {
		return append(dst, toks...)
	}
	w := e.work[:0]
	for _, b := range c {
		w = append(w, t.byteID[b])
	}
	for len(w) > 1 {
		best := rank{rank: -1}
		for i := 0; i+1 < len(w); i++ {
			if r, ok := t.ranks[pairKey(w[i], w[i+1])]; ok && (best.rank < 0 || r.rank < best.rank) {
				best = r
			}
		}
		if best.rank < 0 {
			break
		}
		m := t.merges[best.rank]
		w = mergeAll(w, m.A, m.B, m.ID)
	}
	e.work = w
	if len(e.cache) >= encoderCacheMax {
		clear(e.cache)
	}
	e.cache[string(c)] = append([]uint32(nil), w...)
	return append(dst, w...)
}

// mergeAll replaces every (a, b) in w, left to right, by id, in place.
func mergeAll(w []uint32, a, b, id uint32) []uint32 {
	out := w[:0]
	for i := 0; i < len(w); i++ {
		if i+1 < len(w) && w[i] == a && w[i+1] == b {
			out = append(out, id)
			i++
		} else {
			out = append(out, w[i])
		}
	}
	return out
}
