package tokenizer

import (
	"container/heap"
	"fmt"
	"sort"
)

// Trainer learns BPE merges from text. Add text with Add, then call Train.
// Only chunk counts are kept, so memory grows with the number of distinct
// chunks, not with the text.
type Trainer struct {
	counts map[string]int64
	bytes  int64
}

// NewTrainer returns an empty trainer.
func NewTrainer() *Trainer { return &Trainer{counts: map[string]int64{}} }

// Add counts the chunks of one document.
func (tr *Trainer) Add(text []byte) {
	tr.bytes += int64(len(text))
	chunks(text, func(c []byte) {
		if len(c) > 1 { // single bytes can take part in no merge
			tr.counts[string(c)]++
		}
	})
}

// Bytes returns how many bytes of text were added.
func (tr *Trainer) Bytes() int64 { return tr.bytes }

// pairEntry is a heap entry: a pair and its count when pushed. Counts of
// existing pairs only fall, so a popped entry whose count is stale is pushed
// again with the current count (lazy deletion).
type pairEntry struct {
	count int64
	key   uint64
}

// pairHeap orders by count (highest first), then by pair ids (lowest
// first), which makes training deterministic.
type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].key < h[j].key
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// word is one distinct chunk: its current tokens and how often it occurs.
type word struct {
	toks  []uint32
	count int64
}

// Train learns merges until the vocabulary has vocabSize tokens (bytes, EOT
// and merges) and returns the tokenizer. Each step merges the most frequent
// adjacent pair (ties: lowest ids); it is an error if the text runs out of
// pairs first.
func (tr *Trainer) Train(vocabSize int) (*Tokenizer, error) {
	if vocabSize < MinVocab {
		return nil, fmt.Errorf("train tokenizer: vocabulary size %d below the minimum %d (256 bytes + end-of-document)", vocabSize, MinVocab)
	}
	keys := make([]string, 0, len(tr.counts))
	for k := range tr.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := make([]word, len(keys))
	pairCount := map[uint64]int64{}
	pairWords := map[uint64][]int32{}
	for i, k := range keys {
		w := word{toks: make([]uint32, len(k)), count: tr.counts[k]}
		for j := 0; j < len(k); j++ {
			w.toks[j] = uint32(k[j])
		}
		for j := 0; j+1 < len(w.toks); j++ {
			p := pairKey(w.toks[j], w.toks[j+1])
			pairCount[p] += w.count
			pairWords[p] = append(pairWords[p], int32(i))
		}
		words[i] = w
	}
	h := make(pairHeap, 0, len(pairCount))
	for p, c := range pairCount {
		h = append(h, pairEntry{c, p})
	}
	heap.Init(&h)

	vocab := make([][]byte, MinVocab, vocabSize)
	for i := range 256 {
		vocab[i] = []byte{byte(i)}
	}
	vocab[EOT] = []byte(EOTText)
	byBytes := map[string]uint32{}
	for i := range 256 {
		byBytes[string(vocab[i])] = uint32(i)
	}
	var merges [][2]uint32
	seen := map[int32]bool{}
	for len(vocab) < vocabSize {
		if h.Len() == 0 {
			return nil, fmt.Errorf("train tokenizer: text too small for a vocabulary of %d: only %d merges possible", vocabSize, len(merges))
		}
		e := heap.Pop(&h).(pairEntry)
		cur := pairCount[e.key]
		if cur <= 0 {
			continue
		}
		if cur != e.count {
			heap.Push(&h, pairEntry{cur, e.key})
			continue
		}
		a, b := uint32(e.key>>32), uint32(e.key)
		joined := string(vocab[a]) + string(vocab[b])
		id, ok := byBytes[joined]
		if !ok {
			id = uint32(len(vocab))
			vocab = append(vocab, []byte(joined))
			byBytes[joined] = id
		}
		merges = append(merges, [2]uint32{a, b})
		// Re-count every word holding the pair: remove its old pairs, merge,
		// add its new pairs. Pairs holding the new token can only grow, so
		// they are pushed afresh afterwards.
		clear(seen)
		grown := map[uint64]bool{}
		for _, wi := range pairWords[e.key] {
			if seen[wi] {
				continue
			}
			seen[wi] = true
			w := &words[wi]
			if !hasPair(w.toks, a, b) {
				continue
			}
			for j := 0; j+1 < len(w.toks); j++ {
				pairCount[pairKey(w.toks[j], w.toks[j+1])] -= w.count
			}
			w.toks = mergeAll(w.toks, a, b, id)
			for j := 0; j+1 < len(w.toks); j++ {
				x, y := w.toks[j], w.toks[j+1]
				p := pairKey(x, y)
				pairCount[p] += w.count
				if x == id || y == id {
					if l := pairWords[p]; len(l) == 0 || l[len(l)-1] != wi {
						pairWords[p] = append(l, wi)
					}
					grown[p] = true
				}
			}
		}
		delete(pairWords, e.key)
		delete(pairCount, e.key)
		grownKeys := make([]uint64, 0, len(grown))
		for p := range grown {
			grownKeys = append(grownKeys, p)
		}
		sort.Slice(grownKeys, func(i, j int) bool { return grownKeys[i] < grownKeys[j] })
		for _, p := range grownKeys {
			if c := pairCount[p]; c > 0 {
				heap.Push(&h, pairEntry{c, p})
			}
		}
	}
	return newTokenizer(vocab, EOT, merges)
}

func hasPair(w []uint32, a, b uint32) bool {
	for j := 0; j+1 < len(w); j++ {
		if w[j] == a && w[j+1] == b {
			return true
		}
	}
	return false
}
