package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// crossEntropyFDTol: central differences with eps 1e-6 on a smooth function
// of O(1) curvature err by ~eps^2 plus rounding ~1e-16/eps = 1e-10.
const crossEntropyFDTol = 1e-7

func TestCrossEntropyBackwardFiniteDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const N, V = 4, 5
	targets := []uint32{3, 0, CrossEntropyIgnore, 4}
	logits := make([]float64, N*V)
	for i := range logits {
		logits[i] = 3 * rng.NormFloat64()
	}
	const scale = 1.0 / 3 // three rows count
	loss := func() float64 { return SumReduce(CrossEntropyForward(logits, targets, N, V), scale) }
	grad := CrossEntropyBackward(logits, targets, N, V, scale)
	const eps = 1e-6
	for i := range logits {
		old := logits[i]
		logits[i] = old + eps
		lp := loss()
		logits[i] = old - eps
		lm := loss()
		logits[i] = old
		fd := (lp - lm) / (2 * eps)
		if math.Abs(fd-grad[i]) > crossEntropyFDTol {
			t.Errorf("dlogits[%d] = %.9g, finite difference %.9g", i, grad[i], fd)
		}
	}
}

func TestCrossEntropyExtremeAndInvalid(t *testing.T) {
	// +-300 must not overflow: logsumexp(300, -300, 300) = 300 + log 2.
	losses := CrossEntropyForward([]float64{300, -300, 300, 0, 0, 0}, []uint32{1, 7}, 2, 3)
	if want := 600 + math.Log(2); math.Abs(losses[0]-want) > 1e-12 {
		t.Errorf("loss %v, want %v", losses[0], want)
	}
	if !math.IsNaN(losses[1]) {
		t.Errorf("invalid target gave loss %v, want NaN", losses[1])
	}
	g := CrossEntropyBackward([]float64{300, -300, 300}, []uint32{0}, 1, 3, 1)
	if math.Abs(g[0]+0.5) > 1e-12 || math.Abs(g[1]) > 1e-200 || math.Abs(g[2]-0.5) > 1e-12 {
		t.Errorf("gradient %v, want [-0.5 0 0.5]", g)
	}
}
