package ref

import "math"

// GradNormEps is added to the global norm before dividing by it, so that an
// all-zero gradient gives a clip scale of 1 rather than a division by zero.
const GradNormEps = 1e-6

// GradNorm returns the global L2 norm of a list of gradient tensors,
// sqrt(sum over tensors of sum_i g_i^2). A NaN or infinite element makes the
// norm non-finite: the trainer detects that and never sees a silent 0.
func GradNorm(grads ...[]float64) float64 {
	sum := 0.0
	for _, g := range grads {
		for _, x := range g {
			sum += x * x
		}
	}
	return math.Sqrt(sum)
}

// GradNormScale returns the factor gradients are multiplied by before the
// optimizer step: min(1, maxNorm/(norm+GradNormEps)), so that the clipped
// global norm is at most maxNorm. A non-finite norm gives 0; AdamW skips the
// step in that case (see AdamW).
func GradNormScale(norm, maxNorm float64) float64 {
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return 0
	}
	return math.Min(1, maxNorm/(norm+GradNormEps))
}
