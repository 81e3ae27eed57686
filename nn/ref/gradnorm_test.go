package ref

import (
	"math"
	"testing"
)

func TestGradNorm(t *testing.T) {
	// 3-4-5 split across three tensors, one of them empty.
	if got := GradNorm([]float64{3}, nil, []float64{0, -4}); got != 5 {
		t.Fatalf("GradNorm = %v, want 5", got)
	}
	if got := GradNorm(); got != 0 {
		t.Fatalf("GradNorm of nothing = %v, want 0", got)
	}
}

func TestGradNormScale(t *testing.T) {
	// Inactive: a norm below the maximum leaves gradients alone.
	if s := GradNormScale(0.5, 1); s != 1 {
		t.Fatalf("scale(0.5) = %v, want 1", s)
	}
	if s := GradNormScale(0, 1); s != 1 {
		t.Fatalf("scale(0) = %v, want 1", s)
	}
	// Active: the clipped norm is maxNorm, up to the epsilon.
	g := []float64{30, -40}
	n := GradNorm(g)
	s := GradNormScale(n, 1)
	if clipped := GradNorm([]float64{s * g[0], s * g[1]}); math.Abs(clipped-1) > 1e-6 {
		t.Fatalf("clipped norm = %v, want 1", clipped)
	}
}

// TestGradNormNonFinite checks that a NaN or infinite gradient element
// reaches the norm (so the trainer can see it) and gives a zero scale.
func TestGradNormNonFinite(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		n := GradNorm([]float64{1, 2}, []float64{3, bad, 4})
		if !math.IsNaN(n) && !math.IsInf(n, 0) {
			t.Fatalf("GradNorm with %v = %v, want non-finite", bad, n)
		}
		if s := GradNormScale(n, 1); s != 0 {
			t.Fatalf("scale of non-finite norm = %v, want 0", s)
		}
	}
}
