package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/step-gpu/step-gpu/shaders"
)

// testConfig is a tiny model with hostile sizes: odd vocabulary, T not a
// power of two, FFN width not a multiple of any tile.
var testConfig = Config{V: 37, C: 16, L: 2, NH: 2, H: 44, T: 7, B: 2, RoPE: 10000, NormEps: 1e-5}

// Tolerances of the whole model against the float64 reference. A forward
// pass chains ~20 fp32 ops per block; measured errors are ~1e-6 relative
// on logits and ~1e-5 on gradients, so these leave a 10-100x margin while
// still catching any wrong index (errors of order 1).
var (
	modelLogitTol = tol.Tol{Atol: 2e-5, Rtol: 2e-4}
	modelGradTol  = tol.Tol{Atol: 2e-5, Rtol: 2e-3}
	modelLossTol  = 2e-5
)

func testBatch(cfg Config, seed uint64) (tokens, targets []uint32) {
	rng := rand.New(rand.NewPCG(seed, 5))
	n := cfg.B * cfg.T
	tokens, targets = make([]uint32, n), make([]uint32, n)
	for i := range tokens {
		tokens[i] = uint32(rng.IntN(cfg.V))
		targets[i] = uint32(rng.IntN(cfg.V))
	}
	targets[4] = Ignore
	return tokens, targets
}

func counted(targets []uint32) int {
	n := 0
	for _, t := range targets {
		if t != Ignore {
			n++
		}
	}
	return n
}

// refParams downloads the GPU model's parameters as the reference's.
func refParams(t *testing.T, m *Model) ref.Params {
	p := ref.Params{}
	for _, n := range m.Names() {
		v, err := m.ReadParam(n)
		require.NoError(t, err)
		p[n] = tol.F64(v)
	}
	return p
}

func newTestModel(t *testing.T, cfg Config) *Model {
	d := gputest.Device(t)
	m, err := NewModel(d, cfg, 42)
	require.NoError(t, err)
	t.Cleanup(m.Release)
	// Give the norm gains some spread so their gradients are exercised.
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range m.Specs() {
		if s.Std == 0 {
			v := make([]float32, s.Numel())
			for i := range v {
				v[i] = 1 + float32(rng.NormFloat64()*0.1)
			}
			require.NoError(t, m.WriteParam(s.Name, v))
		}
	}
	return m
}

// TestModelMatchesReference checks logits, loss and every parameter
// gradient of the GPU model against the float64 reference.
func TestModelMatchesReference(t *testing.T) {
	cfg := testConfig
	m := newTestModel(t, cfg)
	tokens, targets := testBatch(cfg, 3)
	logits, loss := runBackward(t, m, tokens, targets)

	p := refParams(t, m)
	f := ref.ModelForward(cfg.Ref(), p, tokens, targets, cfg.B, cfg.T)
	tol.Check(t, "logits", logits, f.Logits, modelLogitTol)
	require.InDelta(t, f.Loss, float64(loss), modelLossTol)
	want := ref.ModelBackward(f, p)
	for _, n := range m.Names() {
		got, err := m.ReadGrad(n)
		require.NoError(t, err)
		tol.Check(t, "grad "+n, got, want[n], modelGradTol)
	}
}

// trajectoryTol bounds the relative loss difference over 10 AdamW steps;
// fp32 rounding compounds through the updates, so it is looser than one step.
const trajectoryTol = 1e-3

// TestModelTrajectory runs 10 optimizer steps on the GPU and in the
// reference (same AdamW, clipping and data) and compares every loss.
func TestModelTrajectory(t *testing.T) {
	cfg := testConfig
	m := newTestModel(t, cfg)
	d := m.D
	p := refParams(t, m)
	ms, vs := ref.Params{}, ref.Params{}
	for n, v := range p {
		ms[n], vs[n] = make([]float64, len(v)), make([]float64, len(v))
	}
	adam := shaders.AdamWDefaults(3e-3)
	radam := ref.AdamWConfig{LR: float64(adam.LR), Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	decay := map[string]bool{}
	for _, s := range m.Specs() {
		decay[s.Name] = s.Decay
	}
	var gpuLoss, refLoss []float64
	for step := 1; step <= 10; step++ {
		tokens, targets := testBatch(cfg, uint64(step))
		scale := float32(1) / float32(counted(targets))
		r := d.NewRecorder()
		require.NoError(t, m.SetBatch(r, tokens, targets))
		require.NoError(t, m.ZeroGrads(r))
		require.NoError(t, m.Forward(r))
		require.NoError(t, m.Head(r, true, scale))
		require.NoError(t, m.LossSum(r, scale))
		require.NoError(t, m.Backward(r))
		require.NoError(t, m.OptimizerStep(r, adam, step))
		require.NoError(t, r.Flush())
		l, err := m.ReadLoss()
		require.NoError(t, err)
		gpuLoss = append(gpuLoss, float64(l))

		f := ref.ModelForward(cfg.Ref(), p, tokens, targets, cfg.B, cfg.T)
		refLoss = append(refLoss, f.Loss)
		g := ref.ModelBackward(f, p)
		var all [][]float64
		for _, n := range m.Names() {
			all = append(all, g[n])
		}
		norm := ref.GradNorm(all...)
		sc := ref.GradNormScale(norm, MaxGradNorm)
		for _, n := range m.Names() {
			ref.AdamW(p[n], ms[n], vs[n], g[n], radam, step, decay[n], norm, sc)
		}
	}
	for i := range gpuLoss {
		require.InEpsilonf(t, refLoss[i], gpuLoss[i], trajectoryTol, "step %d: gpu %v ref %v", i+1, gpuLoss[i], refLoss[i])
	}
	require.Less(t, gpuLoss[9], gpuLoss[0]+0.5, "loss must not blow up")
}

// TestModelLedger checks that every allocation of the model is in the
// ledger and that releasing the model returns it.
func TestModelLedger(t *testing.T) {
	d := gputest.Device(t)
	before := d.Ledger.Total()
	m, err := NewModel(d, testConfig, 1)
	require.NoError(t, err)
	params := uint64(0)
	for _, s := range m.Specs() {
		params += uint64((4*s.Numel() + gpu.Align - 1) / gpu.Align * gpu.Align)
	}
	require.GreaterOrEqual(t, d.Ledger.Current(gpu.CatParams), params)
	require.Equal(t, d.Ledger.Current(gpu.CatParams), d.Ledger.Current(gpu.CatGrads), "one gradient per parameter")
	require.Equal(t, 2*d.Ledger.Current(gpu.CatParams), d.Ledger.Current(gpu.CatOptState), "two AdamW moments")
	m.Release()
	require.LessOrEqual(t, d.Ledger.Total(), before+1<<20, "released model returns its memory (caches aside)")
}
