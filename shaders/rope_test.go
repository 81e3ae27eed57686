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

// ropeTheta is LLaMA's RoPE base.
const ropeTheta = 10000

// ropeAngleUlps bounds the f32 angle error in units of t * 2^-24 radians.
// The kernel computes inv_freq = theta^(-2i/HS) in f32 (as Hugging Face
// does), so its rounding alone, ~1 ulp, is multiplied by t: measured on
// lavapipe against float64, the worst output error is 9e-8*T for |x| <= 1
// (3.7e-4 at T = 4096), that is ~1 ulp * t of angle. 4 leaves a 4-5x margin
// (and room for a device whose exp2/log2 is a few ulps off) while an
// off-by-one position or wrong frequency still fails by orders of magnitude.
const ropeAngleUlps = 4

// ropeTol returns the tolerance for inputs bounded by xmax at sequence
// length T: the angle error above turns into at most |x1| + |x2| <= 2*xmax
// of output error, plus a few ulps for the rotation's products.
func ropeTol(T int, xmax float64) tol.Tol {
	return tol.Tol{Atol: 2*xmax*ropeAngleUlps*float64(T)*0x1p-24 + 1e-6*xmax, Rtol: 2e-6}
}

type ropeCase struct{ B, T, NH, HS int }

// ropeCases cover HS in {2, 4, 6, 64}, NH in {1, 3}, T not a power of two
// and B > 1 (a time index taken from the wrong row fails there).
var ropeCases = []ropeCase{
	{1, 1, 1, 2}, {2, 7, 3, 4}, {1, 13, 1, 6}, {2, 5, 3, 64}, {1, 33, 1, 64}, {3, 3, 3, 2}, {2, 37, 3, 6},
}

// ropeRun records one of the four launchers: forward or backward, in place
// or not. It returns the output buffer.
func ropeRun(t *testing.T, d *gpu.Device, x []float32, cs ropeCase, theta float32, backward, inPlace bool) *gpu.Buffer {
	t.Helper()
	n := len(x)
	out := gputest.Output(t, d, "out", n, 3)
	if inPlace {
		if err := out.WriteF32(0, x); err != nil {
			t.Fatal(err)
		}
	}
	gx := gputest.Upload(t, d, "x", x)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		switch {
		case backward && inPlace:
			return RoPEBackwardInPlace(r, out, cs.B, cs.T, cs.NH, cs.HS, theta)
		case backward:
			return RoPEBackward(r, out, gx, cs.B, cs.T, cs.NH, cs.HS, theta)
		case inPlace:
			return RoPEForwardInPlace(r, out, cs.B, cs.T, cs.NH, cs.HS, theta)
		}
		return RoPEForward(r, out, gx, cs.B, cs.T, cs.NH, cs.HS, theta)
	})
	return out
}

func ropeCheck(t *testing.T, d *gpu.Device, rng *rand.Rand, cs ropeCase, theta float32) {
	t.Helper()
	n := cs.B * cs.T * cs.NH * cs.HS
	x := randVec(rng, n, 2)
	for _, backward := range []bool{false, true} {
		want := ref.RoPEForward(tol.F64(x), cs.B, cs.T, cs.NH, cs.HS, float64(theta))
		if backward {
			want = ref.RoPEBackward(tol.F64(x), cs.B, cs.T, cs.NH, cs.HS, float64(theta))
		}
		for _, inPlace := range []bool{false, true} {
			out := ropeRun(t, d, x, cs, theta, backward, inPlace)
			name := fmt.Sprintf("rope backward=%v inplace=%v", backward, inPlace)
			tol.Check(t, name, gputest.Read(t, out, n), want, ropeTol(cs.T, 2))
			gputest.CheckPadding(t, out, n)
		}
	}
}

func TestRoPE(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(31, 1))
	for _, cs := range ropeCases {
		t.Run(fmt.Sprintf("B%d_T%d_NH%d_HS%d", cs.B, cs.T, cs.NH, cs.HS), func(t *testing.T) {
			normPaths(t, &ropeVec4, cs.HS%8 == 0, func(t *testing.T) { ropeCheck(t, d, rng, cs, ropeTheta) })
		})
	}
	t.Run("theta5e5", func(t *testing.T) { ropeCheck(t, d, rng, ropeCase{2, 11, 3, 64}, 500000) })
}

// TestRoPELongT measures the f32 angle error against float64 up to
// T = 4096, where angles reach ~4096 radians.
func TestRoPELongT(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(32, 1))
	for _, cs := range []ropeCase{{1, 1000, 1, 64}, {1, 4096, 1, 64}, {2, 3001, 1, 128}, {1, 4096, 1, 6}} {
		n := cs.B * cs.T * cs.NH * cs.HS
		x := randVec(rng, n, 1)
		out := ropeRun(t, d, x, cs, ropeTheta, false, false)
		got := gputest.Read(t, out, n)
		want := ref.RoPEForward(tol.F64(x), cs.B, cs.T, cs.NH, cs.HS, ropeTheta)
		tl := ropeTol(cs.T, 1)
		tol.Check(t, fmt.Sprintf("rope T=%d", cs.T), got, want, tl)
		t.Logf("T=%d: max abs error %.3g against float64 (Atol %.3g)", cs.T, tol.Compare(got, want, tl).MaxAbs, tl.Atol)
		gputest.CheckPadding(t, out, n)
	}
}

// TestRoPERoundTrip checks backward(forward(x)) = x on the GPU alone: the
// rotations are orthogonal.
func TestRoPERoundTrip(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(33, 1))
	cs := ropeCase{2, 45, 3, 6}
	n := cs.B * cs.T * cs.NH * cs.HS
	x := randVec(rng, n, 1)
	buf := gputest.Output(t, d, "buf", n, 0)
	if err := buf.WriteF32(0, x); err != nil {
		t.Fatal(err)
	}
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := RoPEForwardInPlace(r, buf, cs.B, cs.T, cs.NH, cs.HS, ropeTheta); err != nil {
			return err
		}
		return RoPEBackwardInPlace(r, buf, cs.B, cs.T, cs.NH, cs.HS, ropeTheta)
	})
	tol.Check(t, "rope round trip", gputest.Read(t, buf, n), tol.F64(x), tol.Tol{Atol: 1e-6, Rtol: 1e-6})
	gputest.CheckPadding(t, buf, n)
}

func TestRoPEBadArgs(t *testing.T) {
	d := gputest.Device(t)
	buf := gputest.Output(t, d, "buf", 16, 0)
	r := d.NewRecorder()
	if err := RoPEForward(r, buf, buf, 1, 2, 1, 8, ropeTheta); err == nil {
		t.Error("want an error when out and x alias")
	}
	if err := RoPEForward(r, buf, buf, 1, 2, 1, 7, ropeTheta); err == nil {
		t.Error("want an error for an odd HS")
	}
	if err := RoPEForwardInPlace(r, buf, 1, 2, 1, 8, float32(math.NaN())); err == nil {
		t.Error("want an error for a NaN theta")
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRoPE measures the d512 shape: B*T = 2048 rows of NH = 8 heads
// of HS = 64 (B = 4, T = 512).
func BenchmarkRoPE(b *testing.B) {
	d := gputest.Device(b)
	const B, T, NH, HS = 4, 512, 8, 64
	const n = B * T * NH * HS
	rng := rand.New(rand.NewPCG(34, 1))
	x := gputest.Upload(b, d, "x", randVec(rng, n, 1))
	out := gputest.Output(b, d, "out", n, 0)
	b.Run("forward", func(b *testing.B) {
		// reads x, writes out
		normBench(b, 4*2*n, func(r *gpu.Recorder) error { return RoPEForward(r, out, x, B, T, NH, HS, ropeTheta) })
	})
	b.Run("inplace", func(b *testing.B) {
		normBench(b, 4*2*n, func(r *gpu.Recorder) error { return RoPEForwardInPlace(r, out, B, T, NH, HS, ropeTheta) })
	})
	ropeVec4 = false
	defer func() { ropeVec4 = true }()
	b.Run("forward_scalar", func(b *testing.B) {
		normBench(b, 4*2*n, func(r *gpu.Recorder) error { return RoPEForward(r, out, x, B, T, NH, HS, ropeTheta) })
	})
}
