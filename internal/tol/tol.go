// Package tol compares GPU results with the float64 reference. A value
// passes when |got - want| <= Atol + Rtol*|want|, the rule numpy's allclose
// uses; a failure reports the worst element and a normalised error summary
// (max |got-want| / max(|want|, 1)) so a reader sees how far off a kernel is.
package tol

import (
	"fmt"
	"math"
	"testing"
)

// Tol is an absolute and a relative tolerance.
type Tol struct{ Atol, Rtol float64 }

// Report summarises a comparison.
type Report struct {
	N         int
	Bad       int
	Worst     int
	WorstGot  float64
	WorstWant float64
	MaxAbs    float64
	RelNorm   float64
}

// Compare compares got with want element by element.
func Compare(got []float32, want []float64, t Tol) Report {
	r := Report{N: len(want), Worst: -1}
	if len(got) != len(want) {
		r.Bad = max(len(got), len(want))
		return r
	}
	worstExcess := -1.0
	maxWant := 1.0
	for i, w := range want {
		g := float64(got[i])
		diff := math.Abs(g - w)
		if math.IsNaN(g) != math.IsNaN(w) || math.IsInf(g, 0) != math.IsInf(w, 0) {
			diff = math.Inf(1)
		} else if math.IsNaN(w) || (math.IsInf(w, 0) && g == w) {
			diff = 0
		}
		maxWant = math.Max(maxWant, math.Abs(w))
		r.MaxAbs = math.Max(r.MaxAbs, diff)
		excess := diff - (t.Atol + t.Rtol*math.Abs(w))
		if excess > 0 {
			r.Bad++
		}
		if excess > worstExcess {
			worstExcess, r.Worst, r.WorstGot, r.WorstWant = excess, i, g, w
		}
	}
	r.RelNorm = r.MaxAbs / maxWant
	return r
}

// String formats a report for a test failure.
func (r Report) String() string {
	return fmt.Sprintf("%d of %d outside tolerance; worst at %d: got %.7g want %.7g; max abs err %.3g, normalised %.3g",
		r.Bad, r.N, r.Worst, r.WorstGot, r.WorstWant, r.MaxAbs, r.RelNorm)
}

// Check fails the test when any element of got is outside the tolerance.
func Check(tb testing.TB, name string, got []float32, want []float64, t Tol) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: length %d, want %d", name, len(got), len(want))
	}
	if r := Compare(got, want, t); r.Bad > 0 {
		tb.Errorf("%s: %s", name, r)
	}
}

// F64 widens a float32 slice for use as a reference input.
func F64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
