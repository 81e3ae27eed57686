package shaders

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/stretchr/testify/require"
)

// gradNormTol: the norm is a fp32 sum of squares along a path of at most
// ~60 roundings (16 per invocation, 2 across the vec4, 8 tree levels, the
// finalize loop and its tree), each ~6e-8 relative on positive terms, so the
// worst case is ~4e-6; sqrt halves it. 1e-5 relative leaves a margin and is
// far below any real bug (a lost slot or element changes the norm by ~1e-3).
var gradNormTol = tol.Tol{Atol: 0, Rtol: 1e-5}

// gradNormRun uploads the tensors, records squares for each and the
// finalize, and returns the clip buffer's (norm, scale).
func gradNormRun(t *testing.T, d *gpu.Device, grads [][]float32, maxNorm float32) []float32 {
	t.Helper()
	sizes := make([]int, len(grads))
	bufs := make([]*gpu.Buffer, len(grads))
	for i, g := range grads {
		// NaN guards after each tensor: elements past n must not count.
		sizes[i] = len(g)
		bufs[i] = gputest.Output(t, d, "g", len(g), 0)
		require.NoError(t, bufs[i].WriteF32(0, g))
	}
	first, total := GradNormPlan(sizes)
	partials := gputest.Output(t, d, "partials", total, 0)
	clip := gputest.Output(t, d, "clip", GradNormClipFloats, 0)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		for i := range grads {
			if err := GradNormSquares(r, partials, first[i], bufs[i], sizes[i]); err != nil {
				return err
			}
		}
		return GradNormFinalize(r, clip, partials, total, maxNorm)
	})
	gputest.CheckPadding(t, partials, total)
	gputest.CheckPadding(t, clip, GradNormClipFloats)
	return gputest.Read(t, clip, GradNormClipFloats)
}

// gradNormWant returns the reference (norm, scale) of float32 tensors.
func gradNormWant(grads [][]float32, maxNorm float32) []float64 {
	g64 := make([][]float64, len(grads))
	for i, g := range grads {
		g64[i] = tol.F64(g)
	}
	norm := ref.GradNorm(g64...)
	return []float64{norm, ref.GradNormScale(norm, float64(maxNorm))}
}

// TestGradNorm covers tensors of hostile sizes (vec4 tail, workgroup and
// slot boundaries, an empty tensor) with clipping active and inactive.
func TestGradNorm(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(31, 32))
	sizes := append(append([]int{}, hostileLens...), 0, GradNormChunk, GradNormChunk+1, 3*GradNormChunk-5, 100003)
	grads := make([][]float32, len(sizes))
	for i, n := range sizes {
		grads[i] = randVec(rng, n, 0.01)
	}
	for _, maxNorm := range []float32{1, 1e6} {
		got := gradNormRun(t, d, grads, maxNorm)
		want := gradNormWant(grads, maxNorm)
		tol.Check(t, "norm and scale", got, want, gradNormTol)
		if maxNorm == 1 {
			require.Less(t, want[1], 1.0, "clipping should be active")
		} else {
			require.Equal(t, float32(1), got[1], "clipping should be inactive")
		}
	}
}

// TestGradNormOneElement: a single element, and a single zero (scale 1).
func TestGradNormOneElement(t *testing.T) {
	d := gputest.Device(t)
	tol.Check(t, "one", gradNormRun(t, d, [][]float32{{-3}}, 1), []float64{3, 1 / (3 + 1e-6)}, gradNormTol)
	tol.Check(t, "zero", gradNormRun(t, d, [][]float32{{0}}, 1), []float64{0, 1}, gradNormTol)
}

// TestGradNormManyPartials finalizes 76,807 partials: one invocation
// summing them all would pass lavapipe's 65,535-iteration loop limit.
func TestGradNormManyPartials(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(33, 34))
	const n = 256*300 + 7
	parts := make([]float32, n)
	sum := 0.0
	for i := range parts {
		parts[i] = float32(rng.Float64())
		sum += float64(parts[i])
	}
	partials := gputest.Upload(t, d, "partials", parts)
	clip := gputest.Output(t, d, "clip", GradNormClipFloats, 0)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return GradNormFinalize(r, clip, partials, n, 1) })
	norm := math.Sqrt(sum)
	tol.Check(t, "norm", gputest.Read(t, clip, 2), []float64{norm, ref.GradNormScale(norm, 1)}, gradNormTol)
	gputest.CheckPadding(t, clip, GradNormClipFloats)
}

// TestGradNormFoldAndChunk forces a folded grid (3 workgroups per
// dimension for 11 slots: a 3x4 grid with one idle workgroup) and binding
// chunks of two slots, so both index paths run on small tensors.
func TestGradNormFoldAndChunk(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(35, 36))
	grads := [][]float32{randVec(rng, 10*GradNormChunk+5, 1), randVec(rng, 77, 1)}
	want := gradNormWant(grads, 1)
	t.Run("fold", func(t *testing.T) {
		adamwGroupsOverride = 3
		defer func() { adamwGroupsOverride = 0 }()
		tol.Check(t, "norm", gradNormRun(t, d, grads, 1), want, gradNormTol)
	})
	t.Run("chunk", func(t *testing.T) {
		adamwChunkOverride = 2 * GradNormChunk
		defer func() { adamwChunkOverride = 0 }()
		tol.Check(t, "norm", gradNormRun(t, d, grads, 1), want, gradNormTol)
	})
}

// TestGradNormNonFinite: a NaN or infinite gradient element must make the
// norm non-finite (the trainer checks it), never a silent 0, and the scale 0.
func TestGradNormNonFinite(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(37, 38))
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 3e38} {
		g := randVec(rng, 5000, 1)
		g[4321] = bad
		got := gradNormRun(t, d, [][]float32{randVec(rng, 10, 1), g}, 1)
		norm := float64(got[0])
		require.Truef(t, math.IsNaN(norm) || math.IsInf(norm, 0), "element %v: norm %v, want NaN or Inf", bad, norm)
		require.Equalf(t, float32(0), got[1], "element %v: scale", bad)
	}
}

// TestGradNormErrors checks that bad sizes are errors naming the problem.
func TestGradNormErrors(t *testing.T) {
	d := gputest.Device(t)
	g := gputest.Upload(t, d, "g", make([]float32, 10))
	partials := gputest.Upload(t, d, "partials", make([]float32, 4))
	clip := gputest.Upload(t, d, "clip", make([]float32, 4))
	r := d.NewRecorder()
	require.ErrorContains(t, GradNormSquares(r, partials, 0, g, 100), "holds")
	require.ErrorContains(t, GradNormSquares(r, partials, 4, g, 10), "overflow")
	require.ErrorContains(t, GradNormFinalize(r, clip, partials, 5, 1), "partials")
	require.ErrorContains(t, GradNormFinalize(r, clip, partials, 4, 0), "positive")
	require.NoError(t, r.Flush())
}

// TestGradNormSlots pins the slot arithmetic the trainer relies on.
func TestGradNormSlots(t *testing.T) {
	require.Equal(t, 0, GradNormSlots(0))
	require.Equal(t, 1, GradNormSlots(1))
	require.Equal(t, 1, GradNormSlots(GradNormChunk))
	require.Equal(t, 2, GradNormSlots(GradNormChunk+1))
	first, total := GradNormPlan([]int{5, 0, GradNormChunk + 1, 3})
	require.Equal(t, []int{0, 1, 1, 3}, first)
	require.Equal(t, 4, total)
}

// BenchmarkGradNorm times the squares and the finalize over 16M gradient
// elements and reports the bandwidth of reading them (4 bytes each).
func BenchmarkGradNorm(b *testing.B) {
	d := gputest.Device(b)
	const n = 16 << 20
	rng := rand.New(rand.NewPCG(53, 54))
	g := gputest.Upload(b, d, "g", randVec(rng, n, 1))
	adamwSettle(b, g)
	slots := GradNormSlots(n)
	partials := gputest.Output(b, d, "partials", slots, 0)
	clip := gputest.Output(b, d, "clip", GradNormClipFloats, 0)
	step := func() {
		gputest.Run(b, d, func(r *gpu.Recorder) error {
			if err := GradNormSquares(r, partials, 0, g, n); err != nil {
				return err
			}
			return GradNormFinalize(r, clip, partials, slots, 1)
		})
	}
	step()
	b.ResetTimer()
	for range b.N {
		step()
	}
	b.ReportMetric(4*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
