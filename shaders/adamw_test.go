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

// adamwTol: parameters are O(1) and gradients up to 3; one step is about a
// dozen fp32 operations per element, each a few ulps (~6e-8) of O(1)
// operands, so five steps drift by ~1e-6 absolute at worst. The moment
// update m = beta1*m + (1-beta1)*g cancels, which leaves absolute rather
// than relative error, hence the Atol. Measured worst errors are ~2e-7.
var adamwTol = tol.Tol{Atol: 2e-6, Rtol: 1e-5}

// adamwCfg uses a large learning rate so that every step moves parameters
// visibly (updates ~1e-2) and decay matters (lr*wd = 1e-3).
var adamwCfg = AdamWDefaults(1e-2)

// adamwRef converts the float32 configuration to the reference's, using
// the float32-rounded values the kernel sees.
func adamwRef(c AdamWConfig) ref.AdamWConfig {
	return ref.AdamWConfig{LR: float64(c.LR), Beta1: float64(c.Beta1), Beta2: float64(c.Beta2),
		Eps: float64(c.Eps), WeightDecay: float64(c.WeightDecay)}
}

// adamwState is one parameter tensor on the device and in the reference.
type adamwState struct {
	n          int
	p, m, v    *gpu.Buffer
	rp, rm, rv []float64
}

func newAdamWState(t *testing.T, d *gpu.Device, rng *rand.Rand, n int) *adamwState {
	t.Helper()
	p0 := randVec(rng, n, 1)
	s := &adamwState{n: n, rp: tol.F64(p0), rm: make([]float64, n), rv: make([]float64, n)}
	s.p = gputest.Output(t, d, "p", n, 0)
	require.NoError(t, s.p.WriteF32(0, p0))
	s.m = gputest.Output(t, d, "m", n, 0)
	s.v = gputest.Output(t, d, "v", n, 0)
	return s
}

// check compares the device state with the reference and the NaN guards.
func (s *adamwState) check(t *testing.T, what string) {
	t.Helper()
	tol.Check(t, what+" p", gputest.Read(t, s.p, s.n), s.rp, adamwTol)
	tol.Check(t, what+" m", gputest.Read(t, s.m, s.n), s.rm, adamwTol)
	tol.Check(t, what+" v", gputest.Read(t, s.v, s.n), s.rv, adamwTol)
	for _, b := range []*gpu.Buffer{s.p, s.m, s.v} {
		gputest.CheckPadding(t, b, s.n)
	}
}

// TestAdamW runs steps t=1..5 on hostile sizes with a given clip buffer,
// decay on and off, clipping inactive (scale 1) and active (scale 0.37).
func TestAdamW(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(41, 42))
	hyper := gputest.Output(t, d, "hyper", AdamWHyperFloats, 0)
	clip := gputest.Output(t, d, "clip", GradNormClipFloats, 0)
	for _, scale := range []float32{1, 0.37} {
		require.NoError(t, clip.WriteF32(0, []float32{2.5, scale}))
		for _, decay := range []bool{false, true} {
			for _, n := range append(append([]int{}, hostileLens...), 3*4096+7) {
				s := newAdamWState(t, d, rng, n)
				for step := 1; step <= 5; step++ {
					g := randVec(rng, n, 3)
					gg := gputest.Output(t, d, "g", n, 0)
					require.NoError(t, gg.WriteF32(0, g))
					require.NoError(t, hyper.WriteF32(0, AdamWHyper(adamwCfg, step)))
					gputest.Run(t, d, func(r *gpu.Recorder) error { return AdamW(r, s.p, gg, s.m, s.v, hyper, clip, n, decay) })
					ref.AdamW(s.rp, s.rm, s.rv, tol.F64(g), adamwRef(adamwCfg), step, decay, 2.5, float64(scale))
				}
				s.check(t, "adamw")
			}
		}
	}
	gputest.CheckPadding(t, hyper, AdamWHyperFloats)
	gputest.CheckPadding(t, clip, GradNormClipFloats)
}

// TestAdamWTrainingStep runs what a trainer records each step, for five
// steps over several tensors: sums of squares, finalize, then AdamW on each
// tensor, with only the hyper buffer written per step and nothing read back.
// Clipping is active with large gradients and inactive with small ones. The
// scratch bytes of the ledger (where cached bind groups keep their uniforms)
// must not grow after the first step.
func TestAdamWTrainingStep(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(43, 44))
	sizes := []int{1, 255, 4099, 2*GradNormChunk + 3}
	first, total := GradNormPlan(sizes)
	partials := gputest.Output(t, d, "partials", total, 0)
	hyper := gputest.Output(t, d, "hyper", AdamWHyperFloats, 0)
	clip := gputest.Output(t, d, "clip", GradNormClipFloats, 0)
	for _, gscale := range []float64{3, 1e-3} {
		states := make([]*adamwState, len(sizes))
		grads := make([]*gpu.Buffer, len(sizes))
		for i, n := range sizes {
			states[i] = newAdamWState(t, d, rng, n)
			grads[i] = gputest.Output(t, d, "g", n, 0)
		}
		var scratch uint64
		for step := 1; step <= 5; step++ {
			g := make([][]float64, len(sizes))
			for i, n := range sizes {
				g32 := randVec(rng, n, gscale)
				require.NoError(t, grads[i].WriteF32(0, g32))
				g[i] = tol.F64(g32)
			}
			require.NoError(t, hyper.WriteF32(0, AdamWHyper(adamwCfg, step)))
			gputest.Run(t, d, func(r *gpu.Recorder) error {
				for i, n := range sizes {
					if err := GradNormSquares(r, partials, first[i], grads[i], n); err != nil {
						return err
					}
				}
				if err := GradNormFinalize(r, clip, partials, total, 1); err != nil {
					return err
				}
				for i, s := range states {
					if err := AdamW(r, s.p, grads[i], s.m, s.v, hyper, clip, s.n, i%2 == 0); err != nil {
						return err
					}
				}
				return nil
			})
			norm := ref.GradNorm(g...)
			scale := ref.GradNormScale(norm, 1)
			for i, s := range states {
				ref.AdamW(s.rp, s.rm, s.rv, g[i], adamwRef(adamwCfg), step, i%2 == 0, norm, scale)
			}
			if gscale > 1 {
				require.Less(t, scale, 0.1, "clipping should be active")
			} else {
				require.Equal(t, 1.0, scale, "clipping should be inactive")
			}
			if step == 1 {
				scratch = d.Ledger.Current(gpu.CatScratch)
			}
			require.Equal(t, scratch, d.Ledger.Current(gpu.CatScratch), "scratch bytes grew at step %d", step)
		}
		for _, s := range states {
			s.check(t, "training step")
		}
		gputest.CheckPadding(t, partials, total)
		gputest.CheckPadding(t, clip, GradNormClipFloats)
	}
}

// TestAdamWSkipsNonFinite: a NaN or infinite global norm (a NaN gradient
// upstream) leaves parameters and moments exactly as they were.
func TestAdamWSkipsNonFinite(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(45, 46))
	const n = 1021
	hyper := gputest.Upload(t, d, "hyper", AdamWHyper(adamwCfg, 3))
	s := newAdamWState(t, d, rng, n)
	m0, v0 := randVec(rng, n, 1), randVec(rng, n, 1)
	require.NoError(t, s.m.WriteF32(0, m0))
	require.NoError(t, s.v.WriteF32(0, v0))
	s.rm, s.rv = tol.F64(m0), tol.F64(v0)
	g := randVec(rng, n, 1)
	g[17] = float32(math.NaN())
	gg := gputest.Upload(t, d, "g", g)
	for _, norm := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		clip := gputest.Upload(t, d, "clip", []float32{norm, 0})
		gputest.Run(t, d, func(r *gpu.Recorder) error { return AdamW(r, s.p, gg, s.m, s.v, hyper, clip, n, true) })
		ref.AdamW(s.rp, s.rm, s.rv, tol.F64(g), adamwRef(adamwCfg), 3, true, float64(norm), 0)
		s.check(t, "skipped")
	}
}

// TestAdamWTail checks that the elements past n (here finite sentinels,
// which a NaN guard cannot distinguish from an in-place NaN update) keep
// their values in p, m and v, and that NaN in the gradient's padding does
// not leak into the last vec4.
func TestAdamWTail(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(49, 50))
	hyper := gputest.Upload(t, d, "hyper", AdamWHyper(adamwCfg, 1))
	clip := gputest.Upload(t, d, "clip", []float32{0.5, 1})
	const sentinel = 7
	for _, n := range []int{1, 2, 3, 5, 1021} {
		s := newAdamWState(t, d, rng, n)
		for _, b := range []*gpu.Buffer{s.p, s.m, s.v} {
			pad := make([]float32, gputest.Padding)
			for i := range pad {
				pad[i] = sentinel
			}
			require.NoError(t, b.WriteF32(n, pad))
		}
		g := randVec(rng, n, 1)
		gg := gputest.Output(t, d, "g", n, 0)
		require.NoError(t, gg.WriteF32(0, g))
		gputest.Run(t, d, func(r *gpu.Recorder) error { return AdamW(r, s.p, gg, s.m, s.v, hyper, clip, n, true) })
		ref.AdamW(s.rp, s.rm, s.rv, tol.F64(g), adamwRef(adamwCfg), 1, true, 0.5, 1)
		for _, b := range []*gpu.Buffer{s.p, s.m, s.v} {
			got, err := b.ReadF32(0, n+gputest.Padding)
			require.NoError(t, err)
			for i := n; i < len(got); i++ {
				require.Equalf(t, float32(sentinel), got[i], "n %d: %s[%d] past the end changed", n, b.Name, i)
			}
		}
		tol.Check(t, "tail p", gputest.Read(t, s.p, n), s.rp, adamwTol)
		tol.Check(t, "tail m", gputest.Read(t, s.m, n), s.rm, adamwTol)
		tol.Check(t, "tail v", gputest.Read(t, s.v, n), s.rv, adamwTol)
	}
}

// TestAdamWFoldAndChunk forces a folded grid (3 workgroups per dimension
// for 11 workgroups: a 3x4 grid with one idle workgroup) and binding
// chunks of GradNormChunk elements (3 chunks, the last one ragged).
func TestAdamWFoldAndChunk(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(47, 48))
	hyper := gputest.Upload(t, d, "hyper", AdamWHyper(adamwCfg, 1))
	clip := gputest.Upload(t, d, "clip", []float32{0.5, 1})
	run := func(t *testing.T, n int) {
		s := newAdamWState(t, d, rng, n)
		g := randVec(rng, n, 1)
		gg := gputest.Upload(t, d, "g", g)
		gputest.Run(t, d, func(r *gpu.Recorder) error { return AdamW(r, s.p, gg, s.m, s.v, hyper, clip, n, true) })
		ref.AdamW(s.rp, s.rm, s.rv, tol.F64(g), adamwRef(adamwCfg), 1, true, 0.5, 1)
		s.check(t, "adamw")
	}
	t.Run("fold", func(t *testing.T) {
		adamwGroupsOverride = 3
		defer func() { adamwGroupsOverride = 0 }()
		run(t, 10*4*adamwWG*adamwVPI+5)
	})
	t.Run("chunk", func(t *testing.T) {
		adamwChunkOverride = GradNormChunk
		defer func() { adamwChunkOverride = 0 }()
		run(t, 2*GradNormChunk+5)
	})
}

// adamwSettle reads one element of each buffer, which submits the queue
// writes still pending for it on their own. Otherwise they all join the
// next submission, and hundreds of MB of uploads plus a large kernel can
// pass the 5 s watchdog on a busy CPU adapter (WEBGPU.md trap 1; seen here
// with the benchmark's 256 MB under load).
func adamwSettle(tb testing.TB, bufs ...*gpu.Buffer) {
	tb.Helper()
	for _, b := range bufs {
		gputest.Read(tb, b, 1)
	}
}

// TestAdamWLarge runs one clipped step on a 4M+3-element tensor (16 MB per
// buffer, 257 partials slots, 1025 AdamW workgroups): indices far past the
// small tests, and a norm summed over many slots. Skipped with -short.
func TestAdamWLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("67 MB buffers; skipped with -short")
	}
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(55, 56))
	const n = 1<<22 + 3
	s := newAdamWState(t, d, rng, n)
	g := randVec(rng, n, 1)
	gg := gputest.Output(t, d, "g", n, 0)
	require.NoError(t, gg.WriteF32(0, g))
	slots := GradNormSlots(n)
	partials := gputest.Output(t, d, "partials", slots, 0)
	clip := gputest.Output(t, d, "clip", GradNormClipFloats, 0)
	hyper := gputest.Upload(t, d, "hyper", AdamWHyper(adamwCfg, 1))
	adamwSettle(t, s.p, s.m, s.v, gg, partials)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := GradNormSquares(r, partials, 0, gg, n); err != nil {
			return err
		}
		if err := GradNormFinalize(r, clip, partials, slots, 1); err != nil {
			return err
		}
		return AdamW(r, s.p, gg, s.m, s.v, hyper, clip, n, true)
	})
	g64 := tol.F64(g)
	norm := ref.GradNorm(g64)
	scale := ref.GradNormScale(norm, 1)
	tol.Check(t, "clip", gputest.Read(t, clip, GradNormClipFloats), []float64{norm, scale}, gradNormTol)
	ref.AdamW(s.rp, s.rm, s.rv, g64, adamwRef(adamwCfg), 1, true, norm, scale)
	s.check(t, "large")
	gputest.CheckPadding(t, partials, slots)
}

// TestAdamWHyper pins the hyper layout and the float64 bias corrections.
func TestAdamWHyper(t *testing.T) {
	h := AdamWHyper(AdamWDefaults(3e-4), 2)
	require.Len(t, h, AdamWHyperFloats)
	require.Equal(t, []float32{3e-4, 0.9, 0.95, 1e-8, 0.1}, h[:5])
	b1, b2 := float64(float32(0.9)), float64(float32(0.95))
	require.InEpsilon(t, 1/(1-b1*b1), h[5], 1e-7)
	require.InEpsilon(t, 1/(1-b2*b2), h[6], 1e-7)
	// Late steps: the corrections tend to 1 without overflow or rounding to 0.
	h = AdamWHyper(AdamWDefaults(3e-4), 1_000_000)
	require.Equal(t, float32(1), h[5])
	require.Equal(t, float32(1), h[6])
	require.Panics(t, func() { AdamWHyper(AdamWDefaults(3e-4), 0) })
	require.NoError(t, AdamWDefaults(3e-4).Validate())
	require.Error(t, AdamWConfig{LR: 1, Beta1: 1, Beta2: 0.5, Eps: 1e-8}.Validate())
	require.Error(t, AdamWConfig{LR: float32(math.NaN()), Beta1: 0.9, Beta2: 0.5, Eps: 1e-8}.Validate())
}

// adamwBenchN is the benchmark's tensor size: 16M parameters, 64 MiB per
// buffer, within lavapipe's 128 MiB storage binding.
const adamwBenchN = 16 << 20

// BenchmarkAdamW times one AdamW step over 16M parameters and reports the
// effective bandwidth: p, g, m, v read and p, m, v written, 28 bytes per
// parameter.
func BenchmarkAdamW(b *testing.B) {
	d := gputest.Device(b)
	rng := rand.New(rand.NewPCG(51, 52))
	bufs := make([]*gpu.Buffer, 4)
	for i := range bufs {
		bufs[i] = gputest.Upload(b, d, "bench", randVec(rng, adamwBenchN, 1))
		adamwSettle(b, bufs[i])
	}
	hyper := gputest.Upload(b, d, "hyper", AdamWHyper(adamwCfg, 1))
	clip := gputest.Upload(b, d, "clip", []float32{0.5, 1})
	step := func() {
		gputest.Run(b, d, func(r *gpu.Recorder) error {
			return AdamW(r, bufs[0], bufs[1], bufs[2], bufs[3], hyper, clip, adamwBenchN, true)
		})
	}
	step() // compile the pipeline and build the bind group outside the timing
	b.ResetTimer()
	for range b.N {
		step()
	}
	b.ReportMetric(28*float64(adamwBenchN)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
