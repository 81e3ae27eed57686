package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRoPEBackwardFD(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, sh := range []struct{ B, T, NH, HS int }{{1, 1, 1, 2}, {2, 3, 3, 4}, {1, 5, 2, 6}} {
		n := sh.B * sh.T * sh.NH * sh.HS
		x, g := normRand(rng, n, 2), normRand(rng, n, 1)
		loss := func() float64 { return normDot(g, RoPEForward(x, sh.B, sh.T, sh.NH, sh.HS, 10000)) }
		dx := RoPEBackward(g, sh.B, sh.T, sh.NH, sh.HS, 10000)
		normCheckFD(t, "rope dx", x, dx, loss)
	}
}

func TestRoPEKnownValues(t *testing.T) {
	// HS = 4, theta = 100: pair 0 turns by t radians, pair 1 by t/10.
	x := []float64{1, 2, 3, 4, 1, 2, 3, 4}
	out := RoPEForward(x, 1, 2, 1, 4, 100)
	for i := 0; i < 4; i++ {
		if out[i] != x[i] {
			t.Fatalf("t=0 must be the identity: out[%d] = %v", i, out[i])
		}
	}
	s0, c0 := math.Sincos(1)
	s1, c1 := math.Sincos(0.1)
	want := []float64{1*c0 - 3*s0, 2*c1 - 4*s1, 3*c0 + 1*s0, 4*c1 + 2*s1}
	for i, w := range want {
		if math.Abs(out[4+i]-w) > 1e-14 {
			t.Fatalf("out[%d] = %v, want %v", 4+i, out[4+i], w)
		}
	}
	// The backward undoes the forward: rotations are orthogonal.
	back := RoPEBackward(out, 1, 2, 1, 4, 100)
	for i := range x {
		if math.Abs(back[i]-x[i]) > 1e-14 {
			t.Fatalf("backward(forward(x))[%d] = %v, want %v", i, back[i], x[i])
		}
	}
}
