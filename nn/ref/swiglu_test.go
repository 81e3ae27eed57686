package ref

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSwiGLUBackwardFD(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	a, b := normRand(rng, 13, 6), normRand(rng, 13, 2)
	g := normRand(rng, 13, 1)
	loss := func() float64 { return normDot(g, SwiGLUForward(a, b)) }
	da, db := SwiGLUBackward(g, a, b)
	normCheckFD(t, "swiglu da", a, da, loss)
	normCheckFD(t, "swiglu db", b, db, loss)
}

func TestSwiGLUExtremes(t *testing.T) {
	a := []float64{-300, 300, -800, 800, 0}
	b := []float64{2, 2, 2, 2, 2}
	h := SwiGLUForward(a, b)
	da, db := SwiGLUBackward([]float64{1, 1, 1, 1, 1}, a, b)
	want := []float64{0, 600, 0, 1600, 0}
	for i := range a {
		for _, v := range []float64{h[i], da[i], db[i]} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("a=%v: non-finite result h %v da %v db %v", a[i], h[i], da[i], db[i])
			}
		}
		if math.Abs(h[i]-want[i]) > 1e-9 {
			t.Fatalf("h(%v) = %v, want %v", a[i], h[i], want[i])
		}
	}
}
