package shaders

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
)

// rmsnormTol covers out and rstd: a row sum of C squares in fp32 (tree
// order, relative error ~log2(C) ulps) followed by sqrt, a division and two
// products, so a few 1e-7 relative at C = 1024 (measured on lavapipe:
// normalised error 1.5e-7, worst abs 6.4e-7 on values ~4); 2e-6 leaves
// margin and still fails on any indexing or formula error.
var rmsnormTol = tol.Tol{Atol: 1e-6, Rtol: 2e-6}

// rmsnormDxTol covers dx = rstd*w*dout - x*rstd^3*dot/C: the two terms
// cancel partly, so the absolute part is scaled to the O(1) terms (inputs
// of magnitude ~2) rather than to the difference. Measured on lavapipe:
// normalised error 1.2e-7, worst abs 1.4e-6 (N = 70,000) and 6e-7 where
// C = 1 makes the two terms cancel almost exactly.
var rmsnormDxTol = tol.Tol{Atol: 1e-5, Rtol: 1e-5}

// rmsnormDwAtolPerRow scales the absolute tolerance of dw, a sum over N
// rows of O(1) products accumulated in fp32 in two stages (blocks of
// ~sqrt(N) rows, then ~sqrt(N) block sums): the rounding error grows about
// linearly with N in the worst case. Measured on lavapipe: 8.6e-5 at
// N = 70,000 (1.2e-9 per row); 4e-9 per row leaves a 3x margin. Rtol stays
// at 1e-5 and Atol has a 1e-6 floor for small N.
const rmsnormDwAtolPerRow = 4e-9

// rmsnormEps is the eps the tests use, LLaMA's default.
const rmsnormEps = 1e-5

type rmsnormCase struct{ N, C int }

var rmsnormCases = []rmsnormCase{
	{1, 1}, {1, 3}, {5, 4}, {5, 7}, {33, 64}, {5, 257}, {33, 1024}, {1, 1024}, {33, 3},
}

func rmsnormData(rng *rand.Rand, N, C int) (x, w []float32) {
	return randVec(rng, N*C, 2), randVec(rng, C, 1.5)
}

// normPaths runs f as the launchers choose and, where they choose a vec4
// kernel (hasVec4), again with *vec4 off, so the fast kernels and the
// simple scalar ones are both pinned to the reference.
func normPaths(t *testing.T, vec4 *bool, hasVec4 bool, f func(t *testing.T)) {
	t.Run("auto", f)
	if hasVec4 {
		t.Run("scalar", func(t *testing.T) {
			*vec4 = false
			defer func() { *vec4 = true }()
			f(t)
		})
	}
}

func TestRMSNormForward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(11, 1))
	for _, cs := range rmsnormCases {
		t.Run(fmt.Sprintf("N%d_C%d", cs.N, cs.C), func(t *testing.T) {
			x, w := rmsnormData(rng, cs.N, cs.C)
			normPaths(t, &rmsnormVec4, cs.C%4 == 0, func(t *testing.T) { rmsnormCheckForward(t, d, x, w, cs.N, cs.C) })
		})
	}
}

func rmsnormCheckForward(t *testing.T, d *gpu.Device, x, w []float32, N, C int) {
	t.Helper()
	out := gputest.Output(t, d, "out", N*C, 0)
	rstd := gputest.Output(t, d, "rstd", N, 0)
	gx, gw := gputest.Upload(t, d, "x", x), gputest.Upload(t, d, "w", w)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return RMSNormForward(r, out, rstd, gx, gw, N, C, rmsnormEps) })
	wantOut, wantRstd := ref.RMSNormForward(tol.F64(x), tol.F64(w), N, C, rmsnormEps)
	tol.Check(t, "rmsnorm out", gputest.Read(t, out, N*C), wantOut, rmsnormTol)
	tol.Check(t, "rmsnorm rstd", gputest.Read(t, rstd, N), wantRstd, rmsnormTol)
	gputest.CheckPadding(t, out, N*C)
	gputest.CheckPadding(t, rstd, N)
}

// TestRMSNormForwardExtremes feeds rows of zeros (rstd = 1/sqrt(eps)) and
// of large values (x^2 near 1e8) through the forward pass.
func TestRMSNormForwardExtremes(t *testing.T) {
	d := gputest.Device(t)
	const N, C = 3, 257
	x := make([]float32, N*C)
	w := make([]float32, C)
	for c := 0; c < C; c++ {
		w[c] = 1 + float32(c%5)
		x[C+c] = 1e4 * float32(1-2*(c%2))
		x[2*C+c] = 1e-3 * float32(c%7)
	}
	rmsnormCheckForward(t, d, x, w, N, C)
}

func TestRMSNormBackward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(12, 1))
	for _, cs := range rmsnormCases {
		t.Run(fmt.Sprintf("N%d_C%d", cs.N, cs.C), func(t *testing.T) {
			normPaths(t, &rmsnormVec4, cs.C%4 == 0, func(t *testing.T) { rmsnormCheckBackward(t, d, rng, cs.N, cs.C) })
		})
	}
}

// TestRMSNormLargeN uses N = 70,000 rows: the row kernels need a folded
// grid, and a design that looped over all rows for dw would pass lavapipe's
// 65,535-iteration limit. C = 3 takes the scalar kernels, C = 4 the vec4 ones.
func TestRMSNormLargeN(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(13, 1))
	const N = 70000
	for _, C := range []int{3, 4} {
		t.Run(fmt.Sprintf("C%d", C), func(t *testing.T) {
			x, w := rmsnormData(rng, N, C)
			rmsnormCheckForward(t, d, x, w, N, C)
			rmsnormCheckBackward(t, d, rng, N, C)
		})
	}
}

func rmsnormCheckBackward(t *testing.T, d *gpu.Device, rng *rand.Rand, N, C int) {
	t.Helper()
	x, w := rmsnormData(rng, N, C)
	dout := randVec(rng, N*C, 1)
	dw0 := randVec(rng, C, 1)
	_, rstd64 := ref.RMSNormForward(tol.F64(x), tol.F64(w), N, C, rmsnormEps)
	rstd := make([]float32, N)
	for i, v := range rstd64 {
		rstd[i] = float32(v)
	}
	dx := gputest.Output(t, d, "dx", N*C, 7)
	dw := gputest.Output(t, d, "dw", C, 0)
	if err := dw.WriteF32(0, dw0); err != nil {
		t.Fatal(err)
	}
	gx, gw := gputest.Upload(t, d, "x", x), gputest.Upload(t, d, "w", w)
	gdout, grstd := gputest.Upload(t, d, "dout", dout), gputest.Upload(t, d, "rstd", rstd)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		return RMSNormBackward(r, dx, dw, gdout, gx, gw, grstd, N, C)
	})
	wantDx, wantDw := ref.RMSNormBackward(tol.F64(dout), tol.F64(x), tol.F64(w), tol.F64(rstd), N, C)
	for c := range wantDw {
		wantDw[c] += float64(dw0[c])
	}
	tol.Check(t, "rmsnorm dx", gputest.Read(t, dx, N*C), wantDx, rmsnormDxTol)
	dwTol := tol.Tol{Atol: 1e-6 + rmsnormDwAtolPerRow*float64(N), Rtol: 1e-5}
	tol.Check(t, "rmsnorm dw", gputest.Read(t, dw, C), wantDw, dwTol)
	gputest.CheckPadding(t, dx, N*C)
	gputest.CheckPadding(t, dw, C)
}

// TestRMSNormBackwardScratchTooSmall checks the explicit-scratch launcher
// refuses a scratch buffer smaller than RMSNormScratchLen.
func TestRMSNormBackwardScratchTooSmall(t *testing.T) {
	d := gputest.Device(t)
	const N, C = 100, 8
	buf := gputest.Output(t, d, "buf", N*C, 0)
	part := gputest.Upload(t, d, "part", make([]float32, 4))
	r := d.NewRecorder()
	err := RMSNormBackwardScratch(r, buf, buf, buf, buf, buf, buf, part, N, C)
	if err == nil {
		t.Fatal("want an error for a too-small scratch buffer")
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}

func normBench(b *testing.B, bytes float64, run func(r *gpu.Recorder) error) {
	d := gputest.Device(b)
	r := d.NewRecorder()
	if err := run(r); err != nil { // compile and warm up
		b.Fatal(err)
	}
	if err := r.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := run(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bytes*float64(b.N)/time.Since(start).Seconds()/1e9, "GB/s")
}

// BenchmarkRMSNorm measures the d512 shape (N = 2048 rows of C = 512).
func BenchmarkRMSNorm(b *testing.B) {
	d := gputest.Device(b)
	const N, C = 2048, 512
	rng := rand.New(rand.NewPCG(14, 1))
	x, w := rmsnormData(rng, N, C)
	gx, gw := gputest.Upload(b, d, "x", x), gputest.Upload(b, d, "w", w)
	out, rstd := gputest.Output(b, d, "out", N*C, 0), gputest.Output(b, d, "rstd", N, 0)
	dout := gputest.Upload(b, d, "dout", randVec(rng, N*C, 1))
	dx, dw := gputest.Output(b, d, "dx", N*C, 0), gputest.Output(b, d, "dw", C, 0)
	b.Run("forward", func(b *testing.B) {
		// reads x, writes out: 2 N*C floats
		normBench(b, 4*2*N*C, func(r *gpu.Recorder) error {
			return RMSNormForward(r, out, rstd, gx, gw, N, C, rmsnormEps)
		})
	})
	b.Run("backward", func(b *testing.B) {
		// reads dout and x, writes dx: 3 N*C floats at the least
		normBench(b, 4*3*N*C, func(r *gpu.Recorder) error {
			return RMSNormBackward(r, dx, dw, dout, gx, gw, rstd, N, C)
		})
	})
	rmsnormVec4 = false
	defer func() { rmsnormVec4 = true }()
	b.Run("forward_scalar", func(b *testing.B) {
		normBench(b, 4*2*N*C, func(r *gpu.Recorder) error {
			return RMSNormForward(r, out, rstd, gx, gw, N, C, rmsnormEps)
		})
	})
	b.Run("backward_scalar", func(b *testing.B) {
		normBench(b, 4*3*N*C, func(r *gpu.Recorder) error {
			return RMSNormBackward(r, dx, dw, dout, gx, gw, rstd, N, C)
		})
	})
}
