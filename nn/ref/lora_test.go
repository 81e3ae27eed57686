package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// loraFDTol: the loss sum(y*g) is linear in each of x, A and B on its own,
// so central differences are exact up to rounding; with eps = 1e-6 and O(1)
// values that is ~1e-10.
const loraFDTol = 1e-7

// loraMergeTol: merging reassociates a handful of float64 products, so the
// two results differ by a few ulps of O(1) values.
const loraMergeTol = 1e-12

func loraRand(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.Float64()*2 - 1
	}
	return out
}

// loraLoss is the scalar loss sum(y * g) of the LoRA forward.
func loraLoss(x, w, a, b, g []float64, N, Cin, Cout, R int, scale float64) float64 {
	y, u := make([]float64, N*Cout), make([]float64, N*R)
	LoRAForward(y, u, x, w, a, b, N, Cin, Cout, R, scale)
	s := 0.0
	for i, v := range y {
		s += v * g[i]
	}
	return s
}

func TestLoRABackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const eps = 1e-6
	for _, s := range [][4]int{{1, 1, 1, 1}, {3, 5, 2, 2}, {4, 3, 7, 3}, {2, 6, 4, 0}} {
		N, Cin, Cout, R := s[0], s[1], s[2], s[3]
		scale := 1.7
		x, w := loraRand(rng, N*Cin), loraRand(rng, Cout*Cin)
		a, b := loraRand(rng, R*Cin), loraRand(rng, Cout*R)
		g := loraRand(rng, N*Cout)
		y, u := make([]float64, N*Cout), make([]float64, N*R)
		LoRAForward(y, u, x, w, a, b, N, Cin, Cout, R, scale)

		// Gradients of parameters accumulate: start from non-zero values and
		// compare the increment.
		da0, db0 := loraRand(rng, R*Cin), loraRand(rng, Cout*R)
		da, db := append([]float64(nil), da0...), append([]float64(nil), db0...)
		dx, du := loraRand(rng, N*Cin), loraRand(rng, N*R) // overwritten
		wBefore := append([]float64(nil), w...)
		LoRABackward(dx, da, db, du, g, x, u, w, a, b, N, Cin, Cout, R, scale)
		for i := range da {
			da[i] -= da0[i]
		}
		for i := range db {
			db[i] -= db0[i]
		}
		// The frozen weight is only read and gets no gradient: the backward
		// has no dW output and leaves W bit for bit as it was.
		require.Equal(t, wBefore, w, "backward modified the frozen weight")

		for _, p := range []struct {
			name string
			v    []float64
			grad []float64
		}{{"x", x, dx}, {"A", a, da}, {"B", b, db}} {
			for i := range p.v {
				old := p.v[i]
				p.v[i] = old + eps
				up := loraLoss(x, w, a, b, g, N, Cin, Cout, R, scale)
				p.v[i] = old - eps
				down := loraLoss(x, w, a, b, g, N, Cin, Cout, R, scale)
				p.v[i] = old
				fd := (up - down) / (2 * eps)
				require.LessOrEqualf(t, math.Abs(fd-p.grad[i]), loraFDTol,
					"N=%d Cin=%d Cout=%d R=%d d%s[%d]: analytic %g, finite difference %g", N, Cin, Cout, R, p.name, i, p.grad[i], fd)
			}
		}
		// du is the gradient of the loss with respect to u: check it the same
		// way through y = x·Wᵀ + scale·u·Bᵀ with u held as an input.
		for i := range u {
			lossU := func(v float64) float64 {
				uu := append([]float64(nil), u...)
				uu[i] = v
				s := 0.0
				for n := 0; n < N; n++ {
					for o := 0; o < Cout; o++ {
						t := 0.0
						for r := 0; r < R; r++ {
							t += uu[n*R+r] * b[o*R+r]
						}
						s += scale * t * g[n*Cout+o]
					}
				}
				return s
			}
			fd := (lossU(u[i]+eps) - lossU(u[i]-eps)) / (2 * eps)
			require.LessOrEqualf(t, math.Abs(fd-du[i]), loraFDTol, "du[%d]: analytic %g, finite difference %g", i, du[i], fd)
		}
	}
}

// TestLoRAZeroB checks that with B = 0 (the adapters' initial state) the
// LoRA forward is the frozen linear.
func TestLoRAZeroB(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	N, Cin, Cout, R := 3, 5, 4, 2
	x, w, a := loraRand(rng, N*Cin), loraRand(rng, Cout*Cin), loraRand(rng, R*Cin)
	y, u := make([]float64, N*Cout), make([]float64, N*R)
	LoRAForward(y, u, x, w, a, make([]float64, Cout*R), N, Cin, Cout, R, 2)
	y0 := make([]float64, N*Cout)
	LoRAForward(y0, nil, x, w, nil, nil, N, Cin, Cout, 0, 2)
	require.Equal(t, y0, y)
}

// TestLoRAMerge checks that the merged weight's frozen linear equals the
// LoRA forward of the unmerged one.
func TestLoRAMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	N, Cin, Cout, R := 4, 7, 5, 3
	scale := 0.5
	x, w := loraRand(rng, N*Cin), loraRand(rng, Cout*Cin)
	a, b := loraRand(rng, R*Cin), loraRand(rng, Cout*R)
	y, u := make([]float64, N*Cout), make([]float64, N*R)
	LoRAForward(y, u, x, w, a, b, N, Cin, Cout, R, scale)
	LoRAMerge(w, a, b, Cout, Cin, R, scale)
	ym := make([]float64, N*Cout)
	LoRAForward(ym, nil, x, w, nil, nil, N, Cin, Cout, 0, scale)
	for i := range y {
		require.InDelta(t, y[i], ym[i], loraMergeTol, "y[%d]", i)
	}
}
