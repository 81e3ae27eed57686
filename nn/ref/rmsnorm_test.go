package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

// normFDEps is the central-difference step: with float64 and O(1) inputs the
// truncation error (~eps^2) and the rounding error (~1e-16/eps) are both
// near 1e-10 here.
const normFDEps = 1e-6

// normFDTol bounds |analytic - numeric| / max(1, |numeric|): a few hundred
// times the ~1e-10 finite-difference error above.
const normFDTol = 1e-7

func normRand(rng *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (rng.Float64()*2 - 1) * scale
	}
	return out
}

// normDot is the scalar loss sum(g * y) whose gradient with respect to y is g.
func normDot(g, y []float64) float64 {
	s := 0.0
	for i := range g {
		s += g[i] * y[i]
	}
	return s
}

// normCheckFD compares grad with central differences of loss with respect
// to every element of p (which loss reads).
func normCheckFD(t *testing.T, name string, p, grad []float64, loss func() float64) {
	t.Helper()
	for i := range p {
		old := p[i]
		p[i] = old + normFDEps
		up := loss()
		p[i] = old - normFDEps
		down := loss()
		p[i] = old
		num := (up - down) / (2 * normFDEps)
		if d := math.Abs(grad[i] - num); d > normFDTol*math.Max(1, math.Abs(num)) {
			t.Fatalf("%s[%d]: analytic %.10g, numeric %.10g", name, i, grad[i], num)
		}
	}
}

func TestRMSNormBackwardFD(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, sh := range []struct{ N, C int }{{1, 1}, {3, 5}, {2, 8}} {
		const eps = 1e-5
		x, w := normRand(rng, sh.N*sh.C, 2), normRand(rng, sh.C, 1.5)
		g := normRand(rng, sh.N*sh.C, 1)
		loss := func() float64 {
			out, _ := RMSNormForward(x, w, sh.N, sh.C, eps)
			return normDot(g, out)
		}
		_, rstd := RMSNormForward(x, w, sh.N, sh.C, eps)
		dx, dw := RMSNormBackward(g, x, w, rstd, sh.N, sh.C)
		normCheckFD(t, "rmsnorm dx", x, dx, loss)
		normCheckFD(t, "rmsnorm dw", w, dw, loss)
	}
}

func TestRMSNormForwardUnitRMS(t *testing.T) {
	// With w = 1 and eps = 0 every output row has mean square 1.
	x := []float64{3, -4, 0, 1e-3, 2e-3, -2e-3}
	out, rstd := RMSNormForward(x, []float64{1, 1, 1}, 2, 3, 0)
	for n := 0; n < 2; n++ {
		ms := 0.0
		for c := 0; c < 3; c++ {
			ms += out[n*3+c] * out[n*3+c] / 3
		}
		if math.Abs(ms-1) > 1e-12 {
			t.Fatalf("row %d: mean square %v, want 1 (rstd %v)", n, ms, rstd[n])
		}
	}
}
