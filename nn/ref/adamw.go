package ref

import "math"

// AdamWConfig holds the AdamW hyperparameters: learning rate, the two
// moment decay rates, the denominator epsilon and the decoupled weight decay.
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

// AdamW applies one AdamW step (Loshchilov & Hutter; PyTorch's AdamW) in
// place to the parameters p (n) and their moments m, v (n), given the
// gradient g (n), the 1-based step number t, the global gradient norm and
// the clip scale from GradNormScale. Per element, with g first scaled:
//
//	g    = scale * g
//	m    = beta1*m + (1-beta1)*g
//	v    = beta2*v + (1-beta2)*g*g
//	mhat = m / (1 - beta1^t)
//	vhat = v / (1 - beta2^t)
//	p    = p - lr*(mhat/(sqrt(vhat)+eps) + wd*p)
//
// where wd is cfg.WeightDecay when decay is set (matrices) and 0 otherwise.
// The decay term uses p from before the step, so this is PyTorch's order:
// p *= 1 - lr*wd, then the Adam step. When norm is NaN or infinite the step
// is skipped: p, m and v are left unchanged.
func AdamW(p, m, v, g []float64, cfg AdamWConfig, t int, decay bool, norm, scale float64) {
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return
	}
	wd := 0.0
	if decay {
		wd = cfg.WeightDecay
	}
	bc1 := 1 - math.Pow(cfg.Beta1, float64(t))
	bc2 := 1 - math.Pow(cfg.Beta2, float64(t))
	for i := range p {
		gi := scale * g[i]
		m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*gi
		v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*gi*gi
		mhat := m[i] / bc1
		vhat := v[i] / bc2
		p[i] -= cfg.LR * (mhat/(math.Sqrt(vhat)+cfg.Eps) + wd*p[i])
	}
}
