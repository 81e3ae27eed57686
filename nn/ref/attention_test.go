package ref

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// attnFDTol: with eps = 1e-6 and O(1) inputs the central difference has a
// truncation error ~eps² times the third derivative (~1e-12) and a rounding
// error ~1e-16/eps = 1e-10, so 1e-7 (absolute, on O(1) gradients) leaves a
// wide margin while still catching any wrong term.
const attnFDTol = 1e-7

func attnRand(rng *rand.Rand, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (rng.Float64()*2 - 1) * scale
	}
	return out
}

// attnLoss is the scalar loss sum(out * g).
func attnLoss(q, k, v, g []float64, B, T, NH, HS int) float64 {
	out, _ := AttentionForward(q, k, v, B, T, NH, HS)
	s := 0.0
	for i, o := range out {
		s += o * g[i]
	}
	return s
}

func TestAttentionForwardSmall(t *testing.T) {
	// T = 1: the only key is the query's own, so out = v and lse = q·k/sqrt(HS).
	q, k, v := []float64{1, 2, 3, 4}, []float64{0.5, -1, 2, 0}, []float64{7, 8, 9, 10}
	out, lse := AttentionForward(q, k, v, 1, 1, 1, 4)
	require.Equal(t, v, out)
	require.InDelta(t, (0.5-2+6)/2, lse[0], 1e-15)

	// T = 2, HS = 1, one head: row 1 mixes v0 and v1 with softmax weights.
	q, k, v = []float64{1, 2}, []float64{3, -1}, []float64{10, 20}
	out, lse = AttentionForward(q, k, v, 1, 2, 1, 1)
	s0, s1 := 2.0*3, 2.0*-1
	p0 := math.Exp(s0) / (math.Exp(s0) + math.Exp(s1))
	require.InDelta(t, 10, out[0], 1e-15)
	require.InDelta(t, p0*10+(1-p0)*20, out[1], 1e-12)
	require.InDelta(t, math.Log(math.Exp(s0)+math.Exp(s1)), lse[1], 1e-12)
}

func TestAttentionBackwardFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const eps = 1e-6
	for _, s := range [][4]int{{1, 1, 1, 1}, {1, 4, 1, 3}, {2, 5, 2, 3}, {1, 3, 3, 2}} {
		B, T, NH, HS := s[0], s[1], s[2], s[3]
		n := B * T * NH * HS
		q, k, v, g := attnRand(rng, n, 1.5), attnRand(rng, n, 1.5), attnRand(rng, n, 1), attnRand(rng, n, 1)
		dq, dk, dv := AttentionBackward(g, q, k, v, B, T, NH, HS)
		for _, x := range []struct {
			name string
			v    []float64
			grad []float64
		}{{"q", q, dq}, {"k", k, dk}, {"v", v, dv}} {
			for i := range x.v {
				old := x.v[i]
				x.v[i] = old + eps
				up := attnLoss(q, k, v, g, B, T, NH, HS)
				x.v[i] = old - eps
				down := attnLoss(q, k, v, g, B, T, NH, HS)
				x.v[i] = old
				fd := (up - down) / (2 * eps)
				require.LessOrEqualf(t, math.Abs(fd-x.grad[i]), attnFDTol,
					"B=%d T=%d NH=%d HS=%d d%s[%d]: analytic %g, finite difference %g", B, T, NH, HS, x.name, i, x.grad[i], fd)
			}
		}
	}
}
