package ref

import (
	"fmt"
	"math"
)

// ModelConfig is the reference model's configuration (nn.Config converts to
// it; ref cannot import nn).
type ModelConfig struct {
	V, C, L, NH, H int
	RoPE, NormEps  float64
}

// Params maps the model's dotted parameter names (nn.ParamSpecs) to values.
type Params map[string][]float64

func (p Params) get(name string) []float64 {
	v, ok := p[name]
	if !ok {
		panic("ref: missing parameter " + name)
	}
	return v
}

// layerActs holds what the backward of one block needs.
type layerActs struct {
	x, h1, rstd1, q, k, v, qr, kr, att, lse, x2, h2, rstd2, g, u, s []float64
}

// Forward is the saved state of a forward pass.
type Forward struct {
	cfg     ModelConfig
	B, T    int
	tokens  []uint32
	targets []uint32
	layers  []layerActs
	xf      []float64 // residual stream after the last block (N, C)
	hf      []float64 // final norm output (N, C)
	rstdf   []float64
	Logits  []float64 // (N, V)
	Losses  []float64 // (N)
	Loss    float64   // mean over rows whose target is not ignored
}

func linear(x, w []float64, N, Cout, Cin int) []float64 { return Matmul(x, w, N, Cout, Cin, NT) }

// ModelForward runs the LLaMA block stack in float64: embedding, L pre-norm
// blocks (RMSNorm, rotary causal attention, residual; RMSNorm, SwiGLU MLP,
// residual), final RMSNorm, untied head, mean cross-entropy. tokens and
// targets are (B, T).
func ModelForward(cfg ModelConfig, p Params, tokens, targets []uint32, B, T int) *Forward {
	if len(tokens) != B*T || len(targets) != B*T {
		panic(fmt.Sprintf("ref: %d tokens and %d targets for B*T = %d", len(tokens), len(targets), B*T))
	}
	N, C, H, HS := B*T, cfg.C, cfg.H, cfg.C/cfg.NH
	f := &Forward{cfg: cfg, B: B, T: T, tokens: tokens, targets: targets}
	x := EmbeddingForward(tokens, p.get("tok_emb"), N, C, cfg.V)
	for l := range cfg.L {
		pre := fmt.Sprintf("layers.%d.", l)
		a := layerActs{x: x}
		a.h1, a.rstd1 = RMSNormForward(x, p.get(pre+"attn_norm"), N, C, cfg.NormEps)
		a.q = linear(a.h1, p.get(pre+"attn.wq"), N, C, C)
		a.k = linear(a.h1, p.get(pre+"attn.wk"), N, C, C)
		a.v = linear(a.h1, p.get(pre+"attn.wv"), N, C, C)
		a.qr = RoPEForward(a.q, B, T, cfg.NH, HS, cfg.RoPE)
		a.kr = RoPEForward(a.k, B, T, cfg.NH, HS, cfg.RoPE)
		a.att, a.lse = AttentionForward(a.qr, a.kr, a.v, B, T, cfg.NH, HS)
		a.x2 = AddScaled(x, linear(a.att, p.get(pre+"attn.wo"), N, C, C), 1)
		a.h2, a.rstd2 = RMSNormForward(a.x2, p.get(pre+"mlp_norm"), N, C, cfg.NormEps)
		a.g = linear(a.h2, p.get(pre+"mlp.w1"), N, H, C)
		a.u = linear(a.h2, p.get(pre+"mlp.w3"), N, H, C)
		a.s = SwiGLUForward(a.g, a.u)
		x = AddScaled(a.x2, linear(a.s, p.get(pre+"mlp.w2"), N, C, H), 1)
		f.layers = append(f.layers, a)
	}
	f.xf = x
	f.hf, f.rstdf = RMSNormForward(x, p.get("norm"), N, C, cfg.NormEps)
	f.Logits = linear(f.hf, p.get("lm_head"), N, cfg.V, C)
	f.Losses = CrossEntropyForward(f.Logits, targets, N, cfg.V)
	count := 0
	for n, t := range targets {
		if t != CrossEntropyIgnore {
			f.Loss += f.Losses[n]
			count++
		}
	}
	if count > 0 {
		f.Loss /= float64(count)
	}
	return f
}

// linearBackward returns dx = dy·W and dW = dyᵀ·x for y = x·Wᵀ.
func linearBackward(dy, x, w []float64, N, Cout, Cin int) (dx, dw []float64) {
	return MatmulBackward(dy, x, w, N, Cout, Cin, NT)
}

func addInto(dst, src []float64) {
	for i := range src {
		dst[i] += src[i]
	}
}

// ModelBackward returns the gradient of f.Loss with respect to every
// parameter, walking the blocks L-1..0.
func ModelBackward(f *Forward, p Params) Params {
	cfg := f.cfg
	B, T := f.B, f.T
	N, C, H, HS := B*T, cfg.C, cfg.H, cfg.C/cfg.NH
	g := Params{}
	count := 0
	for _, t := range f.targets {
		if t != CrossEntropyIgnore {
			count++
		}
	}
	scale := 0.0
	if count > 0 {
		scale = 1 / float64(count)
	}
	dlogits := CrossEntropyBackward(f.Logits, f.targets, N, cfg.V, scale)
	dhf, dhead := linearBackward(dlogits, f.hf, p.get("lm_head"), N, cfg.V, C)
	g["lm_head"] = dhead
	dx, dnorm := RMSNormBackward(dhf, f.xf, p.get("norm"), f.rstdf, N, C)
	g["norm"] = dnorm
	for l := cfg.L - 1; l >= 0; l-- {
		pre := fmt.Sprintf("layers.%d.", l)
		a := f.layers[l]
		// MLP branch: x_out = x2 + s·w2ᵀ.
		ds, dw2 := linearBackward(dx, a.s, p.get(pre+"mlp.w2"), N, C, H)
		dg, du := SwiGLUBackward(ds, a.g, a.u)
		dh2a, dw1 := linearBackward(dg, a.h2, p.get(pre+"mlp.w1"), N, H, C)
		dh2b, dw3 := linearBackward(du, a.h2, p.get(pre+"mlp.w3"), N, H, C)
		addInto(dh2a, dh2b)
		dx2, dmlpNorm := RMSNormBackward(dh2a, a.x2, p.get(pre+"mlp_norm"), a.rstd2, N, C)
		addInto(dx2, dx) // residual
		// Attention branch: x2 = x + att·woᵀ.
		datt, dwo := linearBackward(dx2, a.att, p.get(pre+"attn.wo"), N, C, C)
		dqr, dkr, dv := AttentionBackward(datt, a.qr, a.kr, a.v, B, T, cfg.NH, HS)
		dq := RoPEBackward(dqr, B, T, cfg.NH, HS, cfg.RoPE)
		dk := RoPEBackward(dkr, B, T, cfg.NH, HS, cfg.RoPE)
		dh1, dwq := linearBackward(dq, a.h1, p.get(pre+"attn.wq"), N, C, C)
		dh1k, dwk := linearBackward(dk, a.h1, p.get(pre+"attn.wk"), N, C, C)
		dh1v, dwv := linearBackward(dv, a.h1, p.get(pre+"attn.wv"), N, C, C)
		addInto(dh1, dh1k)
		addInto(dh1, dh1v)
		dxl, dattnNorm := RMSNormBackward(dh1, a.x, p.get(pre+"attn_norm"), a.rstd1, N, C)
		addInto(dxl, dx2) // residual
		dx = dxl
		g[pre+"attn_norm"], g[pre+"attn.wq"], g[pre+"attn.wk"], g[pre+"attn.wv"], g[pre+"attn.wo"] = dattnNorm, dwq, dwk, dwv, dwo
		g[pre+"mlp_norm"], g[pre+"mlp.w1"], g[pre+"mlp.w3"], g[pre+"mlp.w2"] = dmlpNorm, dw1, dw3, dw2
	}
	demb := make([]float64, cfg.V*C)
	EmbeddingBackward(demb, dx, f.tokens, N, C, cfg.V)
	g["tok_emb"] = demb
	return g
}

// Finite reports whether every value is finite.
func Finite(x []float64) bool {
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
