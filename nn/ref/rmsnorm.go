package ref

import "math"

// RMSNormForward normalises each of the N rows of x (N, C) by its root mean
// square and scales it by w (C): out = x * rstd * w with
// rstd = 1/sqrt(mean(x^2) + eps). It returns out (N, C) and rstd (N), which
// the backward pass reuses.
func RMSNormForward(x, w []float64, N, C int, eps float64) (out, rstd []float64) {
	out = make([]float64, N*C)
	rstd = make([]float64, N)
	for n := 0; n < N; n++ {
		row := x[n*C : (n+1)*C]
		ss := 0.0
		for _, v := range row {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(C)+eps)
		rstd[n] = r
		for c, v := range row {
			out[n*C+c] = v * r * w[c]
		}
	}
	return out, rstd
}

// RMSNormBackward returns the gradients of RMSNormForward given dout (N, C),
// the input x (N, C), the weight w (C) and the saved rstd (N):
//
//	dx[c] = rstd*w[c]*dout[c] - x[c] * rstd^3/C * sum_k(dout[k]*w[k]*x[k])
//	dw[c] = sum_n dout[n, c] * x[n, c] * rstd[n]
//
// dx is (N, C) and dw is (C); dw is this call's gradient alone (the GPU
// launcher adds it to the parameter gradient).
func RMSNormBackward(dout, x, w, rstd []float64, N, C int) (dx, dw []float64) {
	dx = make([]float64, N*C)
	dw = make([]float64, C)
	for n := 0; n < N; n++ {
		r := rstd[n]
		dot := 0.0
		for c := 0; c < C; c++ {
			i := n*C + c
			dot += dout[i] * w[c] * x[i]
			dw[c] += dout[i] * x[i] * r
		}
		k := r * r * r * dot / float64(C)
		for c := 0; c < C; c++ {
			i := n*C + c
			dx[i] = r*w[c]*dout[i] - x[i]*k
		}
	}
	return dx, dw
}
