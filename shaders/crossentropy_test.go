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
	"github.com/stretchr/testify/require"
)

// crossEntropyLossTol: the loss is (M - x_t) + log(S) with M - x_t exact
// and S a sum of fp32 exps. Vulkan allows exp 3 + 2|x| ulp, about 5e-6
// relative for |x - M| <= 20, which log(S) turns into ~5e-6 absolute; the
// rest is the rounding of a loss up to 600 (~3e-5 at +-300). Measured on
// lavapipe: worst 1.2e-6 absolute at |logits| <= 3, 1e-7 relative at
// +-300.
var crossEntropyLossTol = tol.Tol{Atol: 2e-5, Rtol: 1e-6}

// crossEntropyGradTol: a probability times gradScale (<= 1) with the same
// ~5e-6 relative exp error, plus an absolute floor for 1 - p at the target.
// Measured on lavapipe: worst 1e-7 absolute (before gradScale).
var crossEntropyGradTol = tol.Tol{Atol: 2e-6, Rtol: 2e-5}

// crossEntropyRun uploads logits (N, V) and targets, runs the fused kernel
// through launch and checks losses and dlogits against the reference.
func crossEntropyRun(t *testing.T, d *gpu.Device, logits []float32, targets []uint32, N, V int, scale float32,
	launch func(r *gpu.Recorder, losses, logits, targets *gpu.Buffer) error) {
	t.Helper()
	gl := gputest.Output(t, d, "losses", N, 7)
	gx := gputest.Output(t, d, "logits", N*V, 0)
	require.NoError(t, gx.WriteF32(0, logits))
	gt := gputest.UploadU32(t, d, "targets", targets)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return launch(r, gl, gx, gt) })
	x := tol.F64(logits)
	tol.Check(t, "cross-entropy loss", gputest.Read(t, gl, N), ref.CrossEntropyForward(x, targets, N, V), crossEntropyLossTol)
	tol.Check(t, "cross-entropy dlogits", gputest.Read(t, gx, N*V),
		ref.CrossEntropyBackward(x, targets, N, V, float64(scale)), crossEntropyGradTol)
	gputest.CheckPadding(t, gl, N)
	gputest.CheckPadding(t, gx, N*V)
}

// crossEntropyCase checks CrossEntropyForwardBackward on one batch.
func crossEntropyCase(t *testing.T, d *gpu.Device, logits []float32, targets []uint32, N, V int, scale float32) {
	t.Helper()
	crossEntropyRun(t, d, logits, targets, N, V, scale, func(r *gpu.Recorder, gl, gx, gt *gpu.Buffer) error {
		return CrossEntropyForwardBackward(r, gl, gx, gt, N, V, scale)
	})
}

// crossEntropyWGs are the workgroup sizes the launcher picks (CPU and GPU);
// tests run both on the test device.
var crossEntropyWGs = []int{crossEntropyCPUWG, crossEntropyWG}

// crossEntropyCaseWG checks the fused kernel with a given workgroup size.
func crossEntropyCaseWG(t *testing.T, d *gpu.Device, logits []float32, targets []uint32, N, V int, scale float32, wg int) {
	t.Helper()
	crossEntropyRun(t, d, logits, targets, N, V, scale, func(r *gpu.Recorder, gl, gx, gt *gpu.Buffer) error {
		return crossEntropyChunk(r, gl, gx, gt, 0, N, V, scale, true, wg)
	})
}

// crossEntropyTargets returns N random targets below V, the last one
// ignored when N > 2, and the gradient scale 1/(counted rows).
func crossEntropyTargets(rng *rand.Rand, N, V int) ([]uint32, float32) {
	targets := make([]uint32, N)
	for i := range targets {
		targets[i] = uint32(rng.IntN(V))
	}
	counted := N
	if N > 2 {
		targets[N-1] = CrossEntropyIgnore
		counted--
	}
	return targets, 1 / float32(counted)
}

func TestCrossEntropy(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(41, 42))
	for _, wg := range crossEntropyWGs {
		for _, V := range embeddingVs {
			for _, N := range embeddingNs {
				targets, scale := crossEntropyTargets(rng, N, V)
				crossEntropyCaseWG(t, d, randVec(rng, N*V, 3), targets, N, V, scale, wg)
			}
		}
	}
}

// TestCrossEntropyExtreme feeds +-300 logits: the loss and gradient must be
// finite and right (exp(600) overflows fp32 unless the max comes first).
func TestCrossEntropyExtreme(t *testing.T) {
	for _, wg := range crossEntropyWGs {
		for _, V := range []int{97, 96} { // scalar and vec4 kernels
			crossEntropyExtreme(t, V, wg)
		}
	}
}

func crossEntropyExtreme(t *testing.T, V, wg int) {
	d := gputest.Device(t)
	var logits []float32
	var targets []uint32
	row := func(f func(j int) float32, target int) {
		for j := 0; j < V; j++ {
			logits = append(logits, f(j))
		}
		targets = append(targets, uint32(target))
	}
	row(func(j int) float32 { return 300 }, 5)                                // uniform: loss log V
	row(func(j int) float32 { return -300 }, V-1)                             // uniform, negative
	row(func(j int) float32 { return float32(600*(j%2) - 300) }, 2)           // target at -300
	row(func(j int) float32 { return float32(600*(j%2) - 300) }, 3)           // target at +300
	row(func(j int) float32 { return float32(-300 + 600*btoi(j == 50)) }, 50) // one-hot, right
	row(func(j int) float32 { return float32(-300 + 600*btoi(j == 50)) }, 0)  // one-hot, wrong: loss 600
	row(func(j int) float32 { return float32(300 - 600*btoi(j == 7)) }, V-1)  // one low
	row(func(j int) float32 { return float32(300 - float64(j)*6.25) }, 40)    // a ramp across the range
	crossEntropyCaseWG(t, d, logits, targets, len(targets), V, 0.125, wg)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCrossEntropyIgnoreAndInvalid: an ignored row gives loss 0 and a zero
// gradient; a target >= V that is not the ignore value gives a NaN loss
// and a zero gradient, and nothing is written out of bounds.
func TestCrossEntropyIgnoreAndInvalid(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(43, 44))
	const N, V = 5, 17
	targets := []uint32{CrossEntropyIgnore, 3, V, CrossEntropyIgnore, 1 << 31}
	crossEntropyCase(t, d, randVec(rng, N*V, 300), targets, N, V, 0.5)
	// The GPU result is checked against the reference; pin the reference too.
	losses := ref.CrossEntropyForward(make([]float64, N*V), targets, N, V)
	require.Zero(t, losses[0])
	require.True(t, math.IsNaN(losses[2]) && math.IsNaN(losses[4]))
}

// TestCrossEntropyLargeV has rows of 70,001 logits: a design with one
// invocation per row would loop past lavapipe's 65,535 iterations.
func TestCrossEntropyLargeV(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(45, 46))
	const N, V = 2, 70001
	for _, wg := range crossEntropyWGs {
		crossEntropyCaseWG(t, d, randVec(rng, N*V, 5), []uint32{V - 1, 12345}, N, V, 0.5, wg)
	}
}

// TestCrossEntropyChunked runs a batch the way the trainer does when its
// logits do not fit one binding: chunk by chunk through one reused logits
// buffer, with losses and targets indexed from the chunk's first row.
// Within a chunk, a tiny binding limit forces misaligned windows and a tiny
// submission budget forces several dispatches per window.
func TestCrossEntropyChunked(t *testing.T) {
	for _, V := range []int{97, 100} { // scalar and vec4 kernels
		crossEntropyChunked(t, V)
	}
}

func crossEntropyChunked(t *testing.T, V int) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(47, 48))
	const N, chunk = 17, 7
	oldBind, oldBudget := embeddingMaxBind, d.SubmitBudget
	embeddingMaxBind = 1024 // 1 or 2 rows of logits per window
	d.SubmitBudget = 2 * crossEntropyWork * float64(V)
	defer func() { embeddingMaxBind, d.SubmitBudget = oldBind, oldBudget }()

	logits := randVec(rng, N*V, 4)
	targets, scale := crossEntropyTargets(rng, N, V)
	gl := gputest.Output(t, d, "losses", N, 7)
	gt := gputest.UploadU32(t, d, "targets", targets)
	gx := gputest.Output(t, d, "logits chunk", chunk*V, 0)
	got := make([]float32, 0, N*V)
	for row0 := 0; row0 < N; row0 += chunk {
		rows := min(chunk, N-row0)
		require.NoError(t, gx.WriteF32(0, logits[row0*V:(row0+rows)*V]))
		r := d.NewRecorder()
		require.NoError(t, CrossEntropyChunk(r, gl, gx, gt, row0, rows, V, scale))
		require.NoError(t, r.Flush())
		require.Greater(t, r.Dispatches, rows/2)
		got = append(got, gputest.Read(t, gx, rows*V)...)
	}
	x := tol.F64(logits)
	tol.Check(t, "chunked loss", gputest.Read(t, gl, N), ref.CrossEntropyForward(x, targets, N, V), crossEntropyLossTol)
	tol.Check(t, "chunked dlogits", got, ref.CrossEntropyBackward(x, targets, N, V, float64(scale)), crossEntropyGradTol)
	gputest.CheckPadding(t, gl, N)
	gputest.CheckPadding(t, gx, chunk*V)

	r := d.NewRecorder()
	require.ErrorContains(t, CrossEntropyChunk(r, gl, gx, gt, N-2, 10, V, scale), "overflow losses")
	require.NoError(t, r.Flush())
}

func TestCrossEntropyRowsPerChunk(t *testing.T) {
	d := gputest.Device(t)
	for _, V := range []int{1, 97, 32000, 128256} {
		rows := CrossEntropyRowsPerChunk(d, V)
		require.Positive(t, rows)
		require.LessOrEqual(t, uint64(4*rows*V), d.Limits.MaxStorageBufferBindingSize)
		require.Greater(t, uint64(4*(rows+1)*V), d.Limits.MaxStorageBufferBindingSize&^15)
	}
	require.Zero(t, CrossEntropyRowsPerChunk(d, 0))
}

// sumTol: x holds losses-like values in [0, 1); each invocation adds up to
// 4,096 of them sequentially, whose fp32 error is at most 4,095 * 2^-24
// = 2.4e-4 relative (positive terms), and the tree and chained dispatches
// add far less.
var sumTol = tol.Tol{Atol: 1e-6, Rtol: 2.5e-4}

func TestSumReduce(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(49, 50))
	lens := append([]int{0}, append(hostileLens, sumChunk+1)...)
	if !testing.Short() {
		// 65,535*256 + 257 would cross lavapipe's loop limit in a design
		// with one workgroup and no chunks (~2 s here: skipped by -short).
		lens = append(lens, 65535*256+257)
	}
	for _, n := range lens {
		x := make([]float32, n)
		for i := range x {
			x[i] = rng.Float32()
		}
		gx := gputest.Upload(t, d, "x", x)
		out := gputest.Output(t, d, "sum", 1, 7)
		scale := float32(1 / float64(max(n, 1)))
		gputest.Run(t, d, func(r *gpu.Recorder) error { return SumReduce(r, out, gx, n, scale) })
		tol.Check(t, "sum", gputest.Read(t, out, 1), []float64{ref.SumReduce(tol.F64(x), float64(scale))}, sumTol)
		gputest.CheckPadding(t, out, 1)
	}
}

// BenchmarkCrossEntropy reports the fused kernel's throughput, counting
// 12 bytes per logit (two reads and one write).
func BenchmarkCrossEntropy(b *testing.B) {
	d := gputest.Device(b)
	for _, c := range []struct{ N, V int }{{2048, 4096}, {256, 32000}} {
		b.Run(fmt.Sprintf("N%d_V%d", c.N, c.V), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(51, 52))
			gl := gputest.Output(b, d, "losses", c.N, 0)
			gx := gputest.Upload(b, d, "logits", randVec(rng, c.N*c.V, 5))
			targets, scale := crossEntropyTargets(rng, c.N, c.V)
			gt := gputest.UploadU32(b, d, "targets", targets)
			run := func() {
				gputest.Run(b, d, func(r *gpu.Recorder) error { return CrossEntropyForwardBackward(r, gl, gx, gt, c.N, c.V, scale) })
			}
			run() // compile the pipeline and build the bind group outside the timing
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(12*float64(c.N*c.V)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// crossEntropyVariantTol: the vec4 and scalar kernels sum the exps in a
// different order (four lanes per invocation), so they agree to the fp32
// rounding of the row sum, a few ulps of the result.
var crossEntropyVariantTol = tol.Tol{Atol: 1e-6, Rtol: 1e-5}

// TestCrossEntropyVec4MatchesScalar pins the vec4 kernel to the scalar one
// on the same rows (V a multiple of 4, extreme and ignored rows included).
func TestCrossEntropyVec4MatchesScalar(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(53, 54))
	const N, V = 17, 1000
	logits := randVec(rng, N*V, 300)
	targets, scale := crossEntropyTargets(rng, N, V)
	targets[0], targets[1] = V-1, 0
	var got [2][]float32
	for i, vec4 := range []bool{false, true} {
		gl := gputest.Output(t, d, "losses", N, 7)
		gx := gputest.Output(t, d, "logits", N*V, 0)
		require.NoError(t, gx.WriteF32(0, logits))
		gt := gputest.UploadU32(t, d, "targets", targets)
		gputest.Run(t, d, func(r *gpu.Recorder) error { return crossEntropyChunk(r, gl, gx, gt, 0, N, V, scale, vec4, 0) })
		got[i] = append(gputest.Read(t, gl, N), gputest.Read(t, gx, N*V)...)
		gputest.CheckPadding(t, gl, N)
		gputest.CheckPadding(t, gx, N*V)
	}
	tol.Check(t, "vec4 vs scalar", got[1], tol.F64(got[0]), crossEntropyVariantTol)
}

// TestCrossEntropyFoldedGrid has more rows than one grid dimension holds
// (65,535 workgroups), so the grid folds into two dimensions.
func TestCrossEntropyFoldedGrid(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(55, 56))
	N := int(d.Limits.MaxComputeWorkgroupsPerDimension) + 2
	const V = 2
	targets := make([]uint32, N)
	for i := range targets {
		targets[i] = uint32(rng.IntN(V))
	}
	crossEntropyCase(t, d, randVec(rng, N*V, 3), targets, N, V, 1/float32(N))
}
