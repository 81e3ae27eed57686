package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// matmulFDTol: central differences of a loss that is bilinear in A and B are
// exact up to rounding (the second derivative in one variable is zero), so
// with eps = 1e-6 and O(1) values the error is rounding, ~1e-10.
const matmulFDTol = 1e-7

func matmulRand(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.Float64()*2 - 1
	}
	return out
}

// matmulLoss is the scalar loss sum(out * G).
func matmulLoss(a, b, g []float64, M, N, K int, layout MatmulLayout) float64 {
	var s float64
	for i, v := range Matmul(a, b, M, N, K, layout) {
		s += v * g[i]
	}
	return s
}

func TestMatmulLayouts(t *testing.T) {
	// A = [[1 2 3] [4 5 6]] (M=2, K=3), B = [[1 0] [0 1] [1 1]] (K=3, N=2).
	a := []float64{1, 2, 3, 4, 5, 6}
	b := []float64{1, 0, 0, 1, 1, 1}
	want := []float64{4, 5, 10, 11}
	require.Equal(t, want, Matmul(a, b, 2, 2, 3, NN))
	aT := []float64{1, 4, 2, 5, 3, 6} // A stored (K, M)
	bT := []float64{1, 0, 1, 0, 1, 1} // B stored (N, K)
	require.Equal(t, want, Matmul(a, bT, 2, 2, 3, NT))
	require.Equal(t, want, Matmul(aT, b, 2, 2, 3, TN))
}

func TestMatmulBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const eps = 1e-6
	for _, layout := range []MatmulLayout{NN, NT, TN} {
		for _, s := range [][3]int{{1, 1, 1}, {3, 5, 2}, {4, 3, 7}} {
			M, N, K := s[0], s[1], s[2]
			a, b, g := matmulRand(rng, M*K), matmulRand(rng, K*N), matmulRand(rng, M*N)
			da, db := MatmulBackward(g, a, b, M, N, K, layout)
			for _, x := range []struct {
				name string
				v    []float64
				grad []float64
			}{{"A", a, da}, {"B", b, db}} {
				for i := range x.v {
					old := x.v[i]
					x.v[i] = old + eps
					up := matmulLoss(a, b, g, M, N, K, layout)
					x.v[i] = old - eps
					down := matmulLoss(a, b, g, M, N, K, layout)
					x.v[i] = old
					fd := (up - down) / (2 * eps)
					require.LessOrEqualf(t, math.Abs(fd-x.grad[i]), matmulFDTol,
						"%v %dx%dx%d d%s[%d]: analytic %g, finite difference %g", layout, M, N, K, x.name, i, x.grad[i], fd)
				}
			}
		}
	}
}
