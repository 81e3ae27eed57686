package nn

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// ParamSpec describes one named parameter tensor.
type ParamSpec struct {
	// Name is the stable dotted name, e.g. "layers.7.attn.wq".
	Name string
	// Shape is the row-major shape: (out, in) for linear maps, (C) for gains.
	Shape []int
	// Layer is the block index, or -1 for embedding, final norm and head.
	Layer int
	// Decay says whether AdamW applies weight decay (matrices only).
	Decay bool
	// Std is the initial standard deviation of a normal draw; 0 (with
	// Bound 0 and Zero unset) means the tensor starts at 1 (RMSNorm gains).
	Std float64
	// Bound, when positive, draws the initial values uniformly from
	// [-Bound, Bound) instead (LoRA's A).
	Bound float64
	// Zero starts the tensor at zero (LoRA's B).
	Zero bool
	// LoRA marks an adapter tensor (ledger category gpu.CatLoRA).
	LoRA bool
}

// Numel returns the number of elements.
func (p ParamSpec) Numel() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// InitStd is the standard deviation of every weight matrix at
// initialisation; residual output projections (attn.wo, mlp.w2) are scaled
// by 1/sqrt(2L) on top, as in GPT-2, so the residual stream's variance does
// not grow with depth.
const InitStd = 0.02

// LayerNames lists the parameter names of block l in a fixed order.
func LayerNames(l int) []string {
	p := fmt.Sprintf("layers.%d.", l)
	return []string{p + "attn_norm", p + "attn.wq", p + "attn.wk", p + "attn.wv", p + "attn.wo",
		p + "mlp_norm", p + "mlp.w1", p + "mlp.w3", p + "mlp.w2"}
}

// LayerSpecs returns the parameter specs of block l.
func (c Config) LayerSpecs(l int) []ParamSpec {
	resid := InitStd / math.Sqrt(2*float64(c.L))
	n := LayerNames(l)
	return []ParamSpec{
		{Name: n[0], Shape: []int{c.C}, Layer: l},
		{Name: n[1], Shape: []int{c.C, c.C}, Layer: l, Decay: true, Std: InitStd},
		{Name: n[2], Shape: []int{c.C, c.C}, Layer: l, Decay: true, Std: InitStd},
		{Name: n[3], Shape: []int{c.C, c.C}, Layer: l, Decay: true, Std: InitStd},
		{Name: n[4], Shape: []int{c.C, c.C}, Layer: l, Decay: true, Std: resid},
		{Name: n[5], Shape: []int{c.C}, Layer: l},
		{Name: n[6], Shape: []int{c.H, c.C}, Layer: l, Decay: true, Std: InitStd},
		{Name: n[7], Shape: []int{c.H, c.C}, Layer: l, Decay: true, Std: InitStd},
		{Name: n[8], Shape: []int{c.C, c.H}, Layer: l, Decay: true, Std: resid},
	}
}

// ParamSpecs lists every parameter of the model: the token embedding, the
// blocks 0..L-1, the final norm and the untied LM head.
func (c Config) ParamSpecs() []ParamSpec {
	out := []ParamSpec{{Name: "tok_emb", Shape: []int{c.V, c.C}, Layer: -1, Decay: true, Std: InitStd}}
	for l := range c.L {
		out = append(out, c.LayerSpecs(l)...)
	}
	return append(out,
		ParamSpec{Name: "norm", Shape: []int{c.C}, Layer: -1},
		ParamSpec{Name: "lm_head", Shape: []int{c.V, c.C}, Layer: -1, Decay: true, Std: InitStd})
}

// InitTensor returns the initial values of one parameter. Each tensor draws
// from its own stream, seeded by the run seed and a hash of its name, so a
// tensor's initial value does not depend on which other tensors exist (growth
// adds layers without disturbing the others).
func InitTensor(p ParamSpec, seed uint64) []float32 {
	out := make([]float32, p.Numel())
	if p.Zero {
		return out
	}
	if p.Std == 0 && p.Bound == 0 {
		for i := range out {
			out[i] = 1
		}
		return out
	}
	h := fnv.New64a()
	h.Write([]byte(p.Name))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	for i := range out {
		if p.Bound > 0 {
			out[i] = float32((2*rng.Float64() - 1) * p.Bound)
		} else {
			out[i] = float32(rng.NormFloat64() * p.Std)
		}
	}
	return out
}
