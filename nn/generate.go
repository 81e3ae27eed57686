package nn

import (
	"fmt"

	"math"
	"math/rand/v2"
	"sort"
)

// SampleOptions control generation.
type SampleOptions struct {
	// Temperature divides the logits; 0 means greedy (argmax).
	Temperature float64
	// TopK keeps the K most likely tokens (0 = all).
	TopK int
	// Stop, if not negative, ends generation when sampled.
	Stop int64
}

// NewSampler returns a batch-1 inference model that shares src's weight
// buffers (no copy: it always sees the current weights and costs only its
// own activations, B = 1). Release it before src; it never frees the
// shared weights.
func NewSampler(src *Model) (*Model, error) {
	cfg := src.Cfg
	cfg.B = 1
	m := &Model{D: src.D, Cfg: cfg, layout: src.layout, specs: src.specs, frozen: src.frozen, wf: src.wf,
		params: src.params, shared: true, inference: true, adapted: map[string]bool{}}
	if err := m.alloc(); err != nil {
		m.Release()
		return nil, fmt.Errorf("allocate sampler: %w", err)
	}
	return m, nil
}

// Generate extends prompt by up to n tokens sampled from the model, which
// must have batch size 1. The context is the last T tokens; each new token
// costs one forward pass over the context (the model keeps no KV cache).
func (m *Model) Generate(prompt []uint32, n int, opt SampleOptions, rng *rand.Rand) ([]uint32, error) {
	c := m.Cfg
	if c.B != 1 {
		return nil, fmt.Errorf("generate: model batch is %d, want 1", c.B)
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	out := append([]uint32(nil), prompt...)
	tokens := make([]uint32, c.T)
	targets := make([]uint32, c.T)
	for i := range targets {
		targets[i] = Ignore
	}
	for range n {
		ctx := out[max(0, len(out)-c.T):]
		clear(tokens)
		copy(tokens, ctx)
		r := m.D.NewRecorder()
		if err := m.SetBatch(r, tokens, targets); err != nil {
			return out, err
		}
		if err := m.Forward(r); err != nil {
			return out, err
		}
		logits, err := m.ForwardLogits(r, len(ctx))
		if err != nil {
			return out, err
		}
		next := sample(logits[(len(ctx)-1)*c.V:len(ctx)*c.V], opt, rng)
		out = append(out, uint32(next))
		if opt.Stop >= 0 && int64(next) == opt.Stop {
			break
		}
	}
	return out, nil
}

// sample draws a token id from one row of logits.
func sample(logits []float32, opt SampleOptions, rng *rand.Rand) int {
	if opt.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if opt.TopK > 0 && opt.TopK < len(idx) {
		idx = idx[:opt.TopK]
	}
	maxv := float64(logits[idx[0]])
	probs := make([]float64, len(idx))
	sum := 0.0
	for i, id := range idx {
		probs[i] = math.Exp((float64(logits[id]) - maxv) / opt.Temperature)
		sum += probs[i]
	}
	u := rng.Float64() * sum
	for i, p := range probs {
		u -= p
		if u <= 0 {
			return idx[i]
		}
	}
	return idx[len(idx)-1]
}
