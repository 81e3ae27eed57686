package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// adamwRefTol: the two formulations below differ only in float64 rounding
// order over a few steps, ~1e-16 relative; 1e-12 leaves ample margin while
// catching any real difference in the update.
const adamwRefTol = 1e-12

var adamwTestCfg = AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}

// adamwTorch is PyTorch's AdamW written the way torch.optim.AdamW computes
// it (decay first, bias corrections folded into the step size and the
// denominator), an independent check of AdamW's formula and order.
func adamwTorch(p, m, v, g []float64, c AdamWConfig, t int, decay bool, scale float64) {
	bc1 := 1 - math.Pow(c.Beta1, float64(t))
	bc2 := 1 - math.Pow(c.Beta2, float64(t))
	for i := range p {
		if decay {
			p[i] *= 1 - c.LR*c.WeightDecay
		}
		gi := g[i] * scale
		m[i] += (gi - m[i]) * (1 - c.Beta1)
		v[i] = v[i]*c.Beta2 + (1-c.Beta2)*gi*gi
		denom := math.Sqrt(v[i])/math.Sqrt(bc2) + c.Eps
		p[i] -= c.LR / bc1 * m[i] / denom
	}
}

func TestAdamWMatchesTorchForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const n = 37
	for _, decay := range []bool{false, true} {
		p, m, v := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range p {
			p[i] = rng.NormFloat64()
		}
		p2, m2, v2 := append([]float64(nil), p...), make([]float64, n), make([]float64, n)
		for step := 1; step <= 5; step++ {
			g := make([]float64, n)
			for i := range g {
				g[i] = rng.NormFloat64() * 3
			}
			norm := GradNorm(g)
			scale := GradNormScale(norm, 1)
			AdamW(p, m, v, g, adamwTestCfg, step, decay, norm, scale)
			adamwTorch(p2, m2, v2, g, adamwTestCfg, step, decay, scale)
		}
		for i := range p {
			for _, pair := range [][2]float64{{p[i], p2[i]}, {m[i], m2[i]}, {v[i], v2[i]}} {
				if math.Abs(pair[0]-pair[1]) > adamwRefTol*math.Max(1, math.Abs(pair[1])) {
					t.Fatalf("decay %v element %d: AdamW %v, torch form %v", decay, i, pair[0], pair[1])
				}
			}
		}
	}
}

// TestAdamWConstantGradient: with bias correction, a constant gradient gives
// mhat = g and vhat = g^2 at every step, so each step moves a parameter by
// lr*g/(|g|+eps), about lr against the gradient's sign.
func TestAdamWConstantGradient(t *testing.T) {
	p, m, v := []float64{0.5, -2}, []float64{0, 0}, []float64{0, 0}
	g := []float64{0.25, -7}
	for step := 1; step <= 5; step++ {
		AdamW(p, m, v, g, adamwTestCfg, step, false, 1, 1)
	}
	want := []float64{0.5 - 5*adamwTestCfg.LR*0.25/(0.25+1e-8), -2 + 5*adamwTestCfg.LR*7/(7+1e-8)}
	for i := range p {
		if math.Abs(p[i]-want[i]) > 1e-12 {
			t.Fatalf("p[%d] = %v, want %v", i, p[i], want[i])
		}
	}
}

// TestAdamWDecayOnly: a zero gradient leaves only the decoupled decay,
// p *= 1 - lr*wd per step, and no decay at all when decay is off.
func TestAdamWDecayOnly(t *testing.T) {
	for _, decay := range []bool{false, true} {
		p, m, v := []float64{3}, []float64{0}, []float64{0}
		for step := 1; step <= 3; step++ {
			AdamW(p, m, v, []float64{0}, adamwTestCfg, step, decay, 0, 1)
		}
		want := 3.0
		if decay {
			want = 3 * math.Pow(1-adamwTestCfg.LR*adamwTestCfg.WeightDecay, 3)
		}
		if math.Abs(p[0]-want) > 1e-15 {
			t.Fatalf("decay %v: p = %v, want %v", decay, p[0], want)
		}
	}
}

// TestAdamWSkipsNonFinite: a non-finite global norm leaves everything alone.
func TestAdamWSkipsNonFinite(t *testing.T) {
	p, m, v := []float64{1}, []float64{0.5}, []float64{0.25}
	AdamW(p, m, v, []float64{math.NaN()}, adamwTestCfg, 2, true, math.NaN(), 0)
	AdamW(p, m, v, []float64{math.Inf(1)}, adamwTestCfg, 2, true, math.Inf(1), 0)
	if p[0] != 1 || m[0] != 0.5 || v[0] != 0.25 {
		t.Fatalf("state changed on a skipped step: p %v m %v v %v", p[0], m[0], v[0])
	}
}
