package ref

import "math"

// swigluSigmoid returns 1/(1+exp(-a)), written so that neither branch overflows
// for large |a|.
func swigluSigmoid(a float64) float64 {
	if a >= 0 {
		return 1 / (1 + math.Exp(-a))
	}
	e := math.Exp(a)
	return e / (1 + e)
}

// SwiGLUForward returns h = silu(a) * b elementwise, silu(a) = a*sigmoid(a),
// where a = x·W1ᵀ and b = x·W3ᵀ are the two FFN projections, both (N, H).
func SwiGLUForward(a, b []float64) []float64 {
	h := make([]float64, len(a))
	for i := range a {
		h[i] = a[i] * swigluSigmoid(a[i]) * b[i]
	}
	return h
}

// SwiGLUBackward returns da and db (both (N, H)) given dh:
//
//	da = dh * b * s*(1 + a*(1-s)),  s = sigmoid(a)
//	db = dh * silu(a)
func SwiGLUBackward(dh, a, b []float64) (da, db []float64) {
	da = make([]float64, len(a))
	db = make([]float64, len(a))
	for i := range a {
		s := swigluSigmoid(a[i])
		da[i] = dh[i] * b[i] * s * (1 + a[i]*(1-s))
		db[i] = dh[i] * a[i] * s
	}
	return da, db
}
