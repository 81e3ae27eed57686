package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
)

// swigluTol: per element one exp (a few ulps on any conformant device),
// one division and three or four products, so a few 1e-7 relative; the
// absolute part covers results that cancel to near zero (silu of a very
// negative a, or 1 + a*(1-s) near a = -1.28). Measured on lavapipe over
// 100,003 elements: normalised error 1.1e-7 (h) to 1.6e-7 (da).
var swigluTol = tol.Tol{Atol: 1e-6, Rtol: 4e-6}

// swigluLens adds primes and an (N, H) product to hostileLens.
var swigluLens = append([]int{2, 7, 13, 1031, 5 * 1376}, hostileLens...)

func swigluInputs(rng *rand.Rand, n int) (a, b, dh []float32) {
	return randVec(rng, n, 8), randVec(rng, n, 2), randVec(rng, n, 1)
}

func TestSwiGLUForward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(21, 1))
	for _, n := range swigluLens {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, b, _ := swigluInputs(rng, n)
			swigluCheckForward(t, d, a, b)
		})
	}
}

func TestSwiGLUBackward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(22, 1))
	for _, n := range swigluLens {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a, b, dh := swigluInputs(rng, n)
			swigluCheckBackward(t, d, a, b, dh)
		})
	}
}

// TestSwiGLUExtremes feeds a = +-300 and other large values: sigmoid must
// saturate to exactly 0 or 1 with no NaN or Inf in h, da or db.
func TestSwiGLUExtremes(t *testing.T) {
	d := gputest.Device(t)
	a := []float32{-300, 300, -88, 88, -1e4, 1e4, 0, -1.2785, 20, -20, -300}
	b := []float32{1, -1, 2, 2, 0.5, 0.5, 3, 1, 1, 1, 7}
	dh := []float32{1, 1, -1, 1, 1, 1, 1, 1, 2, 2, 1}
	swigluCheckForward(t, d, a, b)
	swigluCheckBackward(t, d, a, b, dh)
}

func swigluCheckForward(t *testing.T, d *gpu.Device, a, b []float32) {
	t.Helper()
	n := len(a)
	h := gputest.Output(t, d, "h", n, 0)
	ga, gb := gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return SwiGLUForward(r, h, ga, gb, n) })
	got := gputest.Read(t, h, n)
	swigluFinite(t, "h", got)
	tol.Check(t, "swiglu h", got, ref.SwiGLUForward(tol.F64(a), tol.F64(b)), swigluTol)
	gputest.CheckPadding(t, h, n)
}

func swigluCheckBackward(t *testing.T, d *gpu.Device, a, b, dh []float32) {
	t.Helper()
	n := len(a)
	da, db := gputest.Output(t, d, "da", n, 5), gputest.Output(t, d, "db", n, 5)
	ga, gb, gdh := gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b), gputest.Upload(t, d, "dh", dh)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return SwiGLUBackward(r, da, db, gdh, ga, gb, n) })
	wantDa, wantDb := ref.SwiGLUBackward(tol.F64(dh), tol.F64(a), tol.F64(b))
	gotDa, gotDb := gputest.Read(t, da, n), gputest.Read(t, db, n)
	swigluFinite(t, "da", gotDa)
	swigluFinite(t, "db", gotDb)
	tol.Check(t, "swiglu da", gotDa, wantDa, swigluTol)
	tol.Check(t, "swiglu db", gotDb, wantDb, swigluTol)
	gputest.CheckPadding(t, da, n)
	gputest.CheckPadding(t, db, n)
}

func swigluFinite(t *testing.T, name string, v []float32) {
	t.Helper()
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("swiglu %s[%d] = %v", name, i, x)
		}
	}
}

// BenchmarkSwiGLU measures the d512 shape: N = 2048 rows of H = 1536.
func BenchmarkSwiGLU(b *testing.B) {
	d := gputest.Device(b)
	const n = 2048 * 1536
	rng := rand.New(rand.NewPCG(23, 1))
	a, bb, dh := swigluInputs(rng, n)
	ga, gb, gdh := gputest.Upload(b, d, "a", a), gputest.Upload(b, d, "b", bb), gputest.Upload(b, d, "dh", dh)
	h, da, db := gputest.Output(b, d, "h", n, 0), gputest.Output(b, d, "da", n, 0), gputest.Output(b, d, "db", n, 0)
	b.Run("forward", func(b *testing.B) {
		// reads a and b, writes h
		normBench(b, 4*3*n, func(r *gpu.Recorder) error { return SwiGLUForward(r, h, ga, gb, n) })
	})
	b.Run("backward", func(b *testing.B) {
		// reads dh, a and b, writes da and db
		normBench(b, 4*5*n, func(r *gpu.Recorder) error { return SwiGLUBackward(r, da, db, gdh, ga, gb, n) })
	})
}

// TestSwiGLUShortBuffer checks that a buffer shorter than n is an error
// naming it, not a silent clamped read.
func TestSwiGLUShortBuffer(t *testing.T) {
	d := gputest.Device(t)
	short := gputest.Upload(t, d, "short", make([]float32, 8))
	long := gputest.Upload(t, d, "long", make([]float32, 64))
	r := d.NewRecorder()
	if err := SwiGLUForward(r, long, long, short, 33); err == nil {
		t.Error("want an error for a 8-element b with n = 33")
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}
