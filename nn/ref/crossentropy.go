package ref

import "math"

// CrossEntropyIgnore is the target that marks a row to ignore (padding): its
// loss and gradient are zero.
const CrossEntropyIgnore = 0xFFFFFFFF

// CrossEntropyForward returns losses (N) for logits (N, V) and targets (N):
// loss[n] = logsumexp(logits[n, :]) - logits[n, targets[n]]. A row whose
// target is CrossEntropyIgnore has loss 0; any other target >= V is a
// caller's bug and gives NaN, so that it shows in the mean loss.
func CrossEntropyForward(logits []float64, targets []uint32, N, V int) []float64 {
	losses := make([]float64, N)
	for n := 0; n < N; n++ {
		t := targets[n]
		switch {
		case t == CrossEntropyIgnore:
			losses[n] = 0
		case int(t) >= V:
			losses[n] = math.NaN()
		default:
			row := logits[n*V : (n+1)*V]
			losses[n] = crossEntropyLogSumExp(row) - row[t]
		}
	}
	return losses
}

// CrossEntropyBackward returns dlogits (N, V), the gradient of
// gradScale * sum(losses) with respect to logits (N, V):
// dlogits[n, v] = (softmax(logits[n, :])[v] - [v == targets[n]]) * gradScale.
// Rows with a target >= V (ignored or invalid) get a zero gradient.
func CrossEntropyBackward(logits []float64, targets []uint32, N, V int, gradScale float64) []float64 {
	dlogits := make([]float64, N*V)
	for n := 0; n < N; n++ {
		t := int(targets[n])
		if targets[n] >= uint32(V) {
			continue
		}
		row := logits[n*V : (n+1)*V]
		lse := crossEntropyLogSumExp(row)
		for v, x := range row {
			g := math.Exp(x - lse)
			if v == t {
				g--
			}
			dlogits[n*V+v] = g * gradScale
		}
	}
	return dlogits
}

// crossEntropyLogSumExp returns log(sum(exp(x))), subtracting the maximum
// first so that large inputs do not overflow.
func crossEntropyLogSumExp(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// SumReduce returns scale * sum(x), the mean loss when scale is 1/N.
func SumReduce(x []float64, scale float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return scale * s
}
