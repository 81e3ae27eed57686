package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// embeddingFDTol: the forward is linear in wte, so central differences with
// eps 1e-6 are exact up to float64 rounding of the weighted sum (~1e-9).
const embeddingFDTol = 1e-7

func TestEmbeddingForward(t *testing.T) {
	wte := []float64{1, 2, 3, 4, 5, 6} // V=3, C=2
	out := EmbeddingForward([]uint32{2, 0, 7, 2}, wte, 4, 2, 3)
	want := []float64{5, 6, 1, 2, 0, 0, 5, 6}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("out[%d] = %v, want %v", i, out[i], want[i])
		}
	}
}

// TestEmbeddingBackwardFiniteDiff checks the backward against central
// differences of L = sum(out * w), whose gradient with respect to out is w.
func TestEmbeddingBackwardFiniteDiff(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const N, C, V = 7, 3, 5
	tokens := []uint32{4, 1, 4, 0, 4, 2, 1} // token 3 unused, 4 repeated
	wte := make([]float64, V*C)
	w := make([]float64, N*C)
	for i := range wte {
		wte[i] = rng.NormFloat64()
	}
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	loss := func() float64 {
		s := 0.0
		for i, o := range EmbeddingForward(tokens, wte, N, C, V) {
			s += o * w[i]
		}
		return s
	}
	dwte := make([]float64, V*C)
	for i := range dwte {
		dwte[i] = 0.25 // the backward accumulates
	}
	EmbeddingBackward(dwte, w, tokens, N, C, V)
	const eps = 1e-6
	for i := range wte {
		old := wte[i]
		wte[i] = old + eps
		lp := loss()
		wte[i] = old - eps
		lm := loss()
		wte[i] = old
		fd := (lp-lm)/(2*eps) + 0.25
		if math.Abs(fd-dwte[i]) > embeddingFDTol {
			t.Errorf("dwte[%d] = %.9g, finite difference %.9g", i, dwte[i], fd)
		}
	}
}
