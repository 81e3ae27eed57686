package ref

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// tinyModel returns a small random model whose every op shape is hostile
// (odd V, T not a power of two, two layers so the residual paths chain).
func tinyModel(seed uint64) (ModelConfig, Params, []uint32, []uint32, int, int) {
	cfg := ModelConfig{V: 11, C: 8, L: 2, NH: 2, H: 12, RoPE: 10000, NormEps: 1e-5}
	rng := rand.New(rand.NewPCG(seed, 1))
	p := Params{}
	rnd := func(n int, std float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = rng.NormFloat64() * std
		}
		return out
	}
	gain := func() []float64 {
		out := rnd(cfg.C, 0.1)
		for i := range out {
			out[i] += 1
		}
		return out
	}
	p["tok_emb"] = rnd(cfg.V*cfg.C, 1)
	for l := range cfg.L {
		pre := fmt.Sprintf("layers.%d.", l)
		p[pre+"attn_norm"], p[pre+"mlp_norm"] = gain(), gain()
		for _, n := range []string{"attn.wq", "attn.wk", "attn.wv", "attn.wo"} {
			p[pre+n] = rnd(cfg.C*cfg.C, 0.3)
		}
		p[pre+"mlp.w1"], p[pre+"mlp.w3"], p[pre+"mlp.w2"] = rnd(cfg.H*cfg.C, 0.3), rnd(cfg.H*cfg.C, 0.3), rnd(cfg.C*cfg.H, 0.3)
	}
	p["norm"] = gain()
	p["lm_head"] = rnd(cfg.V*cfg.C, 0.3)
	B, T := 2, 5
	tokens, targets := make([]uint32, B*T), make([]uint32, B*T)
	for i := range tokens {
		tokens[i] = uint32(rng.IntN(cfg.V))
		targets[i] = uint32(rng.IntN(cfg.V))
	}
	targets[3] = CrossEntropyIgnore
	return cfg, p, tokens, targets, B, T
}

// modelFDTol bounds |analytic - numeric| for central differences with
// step 1e-5 in float64 (truncation ~h^2, rounding ~1e-16/h), relative to
// the gradient's scale.
const modelFDTol = 1e-6

// TestModelBackwardFiniteDifferences checks every parameter's gradient of
// the whole reference model at a few elements against central differences.
func TestModelBackwardFiniteDifferences(t *testing.T) {
	cfg, p, tokens, targets, B, T := tinyModel(3)
	f := ModelForward(cfg, p, tokens, targets, B, T)
	g := ModelBackward(f, p)
	if len(g) != len(p) {
		t.Fatalf("%d gradients for %d parameters", len(g), len(p))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const h = 1e-5
	for name, w := range p {
		for range 3 {
			i := rng.IntN(len(w))
			orig := w[i]
			w[i] = orig + h
			lp := ModelForward(cfg, p, tokens, targets, B, T).Loss
			w[i] = orig - h
			lm := ModelForward(cfg, p, tokens, targets, B, T).Loss
			w[i] = orig
			num := (lp - lm) / (2 * h)
			if got := g[name][i]; math.Abs(got-num) > modelFDTol*(1+math.Abs(num)) {
				t.Errorf("%s[%d]: analytic %.10g, numeric %.10g", name, i, got, num)
			}
		}
	}
}

func TestModelForwardLossNearLogV(t *testing.T) {
	cfg, p, tokens, targets, B, T := tinyModel(4)
	for k := range p {
		if k == "lm_head" {
			for i := range p[k] {
				p[k][i] = 0
			}
		}
	}
	f := ModelForward(cfg, p, tokens, targets, B, T)
	if math.Abs(f.Loss-math.Log(float64(cfg.V))) > 1e-12 {
		t.Fatalf("zero head must give uniform predictions: loss %v, want log V = %v", f.Loss, math.Log(float64(cfg.V)))
	}
}
