package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/shaders"
)

// stagedConfig has three blocks so that a frozen, a trained and a frozen
// block alternate (growth at intermediate positions leaves such layouts).
var stagedConfig = Config{V: 37, C: 16, L: 3, NH: 2, H: 44, T: 7, B: 2, RoPE: 10000, NormEps: 1e-5}

// loraGradTol bounds the adapters' gradients against those derived from
// the vanilla model's weight gradient (dB = s·dW·Aᵀ, dA = s·Bᵀ·dW): two
// extra fp32 products on top of modelGradTol's chain.
var loraGradTol = tol.Tol{Atol: 5e-5, Rtol: 5e-3}

// randomise fills every tensor of a model except the frozen weights with
// seeded values of the given spread, so adapters are not at their (B = 0)
// start and the gains are not all 1.
func randomise(t *testing.T, m *Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, s := range append(append([]ParamSpec(nil), m.Specs()...), m.FrozenSpecs()...) {
		v := make([]float32, s.Numel())
		for i := range v {
			switch {
			case len(s.Shape) == 1:
				v[i] = 1 + float32(rng.NormFloat64()*0.1)
			case s.LoRA:
				v[i] = float32(rng.NormFloat64() * 0.1)
			default:
				v[i] = float32(rng.NormFloat64() * 0.05)
			}
		}
		require.NoError(t, m.WriteParam(s.Name, v))
	}
}

// mergedInto writes the staged model's function into a vanilla model of the
// same config: trained tensors as they are, and each frozen weight merged
// with its adapter, W + s·B·A, in float64 on the host.
func mergedInto(t *testing.T, s, v *Model) {
	lo := s.Layout()
	for _, spec := range v.Specs() {
		w, err := s.ReadParam(spec.Name)
		require.NoError(t, err)
		if an, bn := LoRANames(spec.Name); s.Param(an) != nil {
			a, err := s.ReadParam(an)
			require.NoError(t, err)
			b, err := s.ReadParam(bn)
			require.NoError(t, err)
			cout, cin := spec.Shape[0], spec.Shape[1]
			for o := range cout {
				for i := range cin {
					acc := float64(w[o*cin+i])
					for k := range lo.R {
						acc += float64(lo.Scale()) * float64(b[o*lo.R+k]) * float64(a[k*cin+i])
					}
					w[o*cin+i] = float32(acc)
				}
			}
		}
		require.NoError(t, v.WriteParam(spec.Name, w))
	}
}

// runBackward records one micro-batch's forward, head and backward and
// returns the logits and the loss.
func runBackward(t *testing.T, m *Model, tokens, targets []uint32) ([]float32, float32) {
	N := m.Cfg.B * m.Cfg.T
	scale := float32(1) / float32(counted(targets))
	r := m.D.NewRecorder()
	require.NoError(t, m.SetBatch(r, tokens, targets))
	require.NoError(t, m.ZeroGrads(r))
	require.NoError(t, m.Forward(r))
	logits, err := m.ForwardLogits(r, N)
	require.NoError(t, err)
	require.NoError(t, m.Head(r, true, scale))
	require.NoError(t, m.LossSum(r, scale))
	require.NoError(t, m.Backward(r))
	require.NoError(t, r.Flush())
	loss, err := m.ReadLoss()
	require.NoError(t, err)
	return logits, loss
}

// TestStagedModelMatchesMerged checks a model with frozen, adapted blocks
// against the vanilla model (itself checked against the float64 reference)
// whose frozen weights are merged with their adapters: the same logits and
// loss, the same gradients for every trained tensor, adapter gradients equal
// to s·dW·Aᵀ and s·Bᵀ·dW, and no gradient buffers for frozen tensors. Both
// weight formats run; half weights are compared through their stored values.
func TestStagedModelMatchesMerged(t *testing.T) {
	for _, wf := range []shaders.WeightFormat{shaders.F32, shaders.Half} {
		t.Run(wf.String(), func(t *testing.T) {
			d := gputest.Device(t)
			cfg := stagedConfig
			lo := Layout{Frozen: []bool{true, false, true}, R: 3, Alpha: 6, Format: wf,
				Targets: []string{"attn.wq", "attn.wk", "attn.wo", "mlp.w1", "mlp.w3", "mlp.w2"}} // wv stays plain
			s, err := NewStagedModel(d, cfg, lo, 7)
			require.NoError(t, err)
			defer s.Release()
			randomise(t, s, 11)
			v, err := NewModel(d, cfg, 1)
			require.NoError(t, err)
			defer v.Release()
			mergedInto(t, s, v)

			tokens, targets := testBatch(cfg, 3)
			sl, sloss := runBackward(t, s, tokens, targets)
			vl, vloss := runBackward(t, v, tokens, targets)
			tol.Check(t, "logits", sl, tol.F64(vl), modelLogitTol)
			require.InDelta(t, float64(vloss), float64(sloss), modelLossTol)

			for _, spec := range s.Specs() {
				if spec.LoRA {
					continue
				}
				got, err := s.ReadGrad(spec.Name)
				require.NoError(t, err)
				want, err := v.ReadGrad(spec.Name)
				require.NoError(t, err)
				tol.Check(t, "grad "+spec.Name, got, tol.F64(want), modelGradTol)
			}
			adapted := 0
			for _, spec := range s.FrozenSpecs() {
				require.Nil(t, s.Grad(spec.Name), "frozen %s has a gradient buffer", spec.Name)
				an, bn := LoRANames(spec.Name)
				if s.Param(an) == nil {
					continue
				}
				adapted++
				checkAdapterGrads(t, s, v, spec, an, bn)
			}
			require.Equal(t, 2*6, adapted, "six adapted maps in each of two frozen blocks")
		})
	}
}

// checkAdapterGrads compares one adapter's gradients with those implied by
// the merged weight's gradient dW: dB = s·dW·Aᵀ and dA = s·Bᵀ·dW.
func checkAdapterGrads(t *testing.T, s, v *Model, spec ParamSpec, an, bn string) {
	lo := s.Layout()
	sc := float64(lo.Scale())
	dw, err := v.ReadGrad(spec.Name)
	require.NoError(t, err)
	a, err := s.ReadParam(an)
	require.NoError(t, err)
	b, err := s.ReadParam(bn)
	require.NoError(t, err)
	cout, cin, R := spec.Shape[0], spec.Shape[1], lo.R
	wantA, wantB := make([]float64, R*cin), make([]float64, cout*R)
	for o := range cout {
		for i := range cin {
			g := sc * float64(dw[o*cin+i])
			for k := range R {
				wantB[o*R+k] += g * float64(a[k*cin+i])
				wantA[k*cin+i] += g * float64(b[o*R+k])
			}
		}
	}
	gotA, err := s.ReadGrad(an)
	require.NoError(t, err)
	gotB, err := s.ReadGrad(bn)
	require.NoError(t, err)
	tol.Check(t, "grad "+an, gotA, wantA, loraGradTol)
	tol.Check(t, "grad "+bn, gotB, wantB, loraGradTol)
}

// TestStagedOptimizerStep checks that an optimizer step of a staged model
// changes trained tensors and adapters but leaves frozen weights bit for
// bit, and that the ledger files adapters under CatLoRA with their own
// gradients and moments while frozen half weights take 2 bytes each.
func TestStagedOptimizerStep(t *testing.T) {
	d := gputest.Device(t)
	cfg := stagedConfig
	lo := Layout{Frozen: []bool{true, true, false}, R: 4, Alpha: 8, Format: shaders.Half}
	loraBase, paramBase, gradBase := d.Ledger.Current(gpu.CatLoRA), d.Ledger.Current(gpu.CatParams), d.Ledger.Current(gpu.CatGrads)
	m, err := NewStagedModel(d, cfg, lo, 3)
	require.NoError(t, err)
	defer m.Release()
	randomise(t, m, 5)

	var loraBytes, paramBytes, gradBytes uint64
	for _, s := range m.Specs() {
		gradBytes += align(4 * uint64(s.Numel()))
		if s.LoRA {
			loraBytes += align(4 * uint64(s.Numel()))
		} else {
			paramBytes += align(4 * uint64(s.Numel()))
		}
	}
	for _, s := range m.FrozenSpecs() {
		if len(s.Shape) == 2 {
			require.Equal(t, shaders.Half, m.Format(s.Name))
		}
		paramBytes += align(m.Format(s.Name).Bytes(s.Numel()))
	}
	require.Equal(t, loraBytes, d.Ledger.Current(gpu.CatLoRA)-loraBase)
	require.Equal(t, paramBytes, d.Ledger.Current(gpu.CatParams)-paramBase)
	require.Equal(t, gradBytes, d.Ledger.Current(gpu.CatGrads)-gradBase, "gradients for trained tensors only")
	require.Equal(t, 7*2*2, countLoRA(m), "two tensors per linear map of each frozen block")

	before := map[string][]float32{}
	for _, s := range append(append([]ParamSpec(nil), m.Specs()...), m.FrozenSpecs()...) {
		before[s.Name], err = m.ReadParam(s.Name)
		require.NoError(t, err)
	}
	tokens, targets := testBatch(cfg, 4)
	runBackward(t, m, tokens, targets)
	r := d.NewRecorder()
	require.NoError(t, m.OptimizerStep(r, shaders.AdamWDefaults(1e-2), 1))
	require.NoError(t, r.Flush())
	for _, s := range m.FrozenSpecs() {
		got, err := m.ReadParam(s.Name)
		require.NoError(t, err)
		require.Equal(t, before[s.Name], got, "frozen %s changed", s.Name)
	}
	for _, s := range m.Specs() {
		got, err := m.ReadParam(s.Name)
		require.NoError(t, err)
		require.NotEqual(t, before[s.Name], got, "trained %s did not change", s.Name)
	}
}

func countLoRA(m *Model) int {
	n := 0
	for _, s := range m.Specs() {
		if s.LoRA {
			n++
		}
	}
	return n
}

func align(b uint64) uint64 { return (max(b, 1) + gpu.Align - 1) / gpu.Align * gpu.Align }

// TestLayoutValidate checks the layout's errors.
func TestLayoutValidate(t *testing.T) {
	cfg := stagedConfig
	for _, c := range []struct {
		lo   Layout
		want string
	}{
		{Layout{Frozen: []bool{true}}, "1 frozen flags for 3 layers"},
		{Layout{R: -1}, "negative"},
		{Layout{R: 4}, "alpha must be positive"},
		{Layout{R: 4, Alpha: 1, Targets: []string{"attn.wz"}}, `unknown LoRA target "attn.wz"`},
		{Layout{Format: 7}, "unknown frozen weight format"},
	} {
		err := c.lo.Validate(cfg)
		require.Error(t, err, fmt.Sprint(c.lo))
		require.Contains(t, err.Error(), c.want)
	}
	require.NoError(t, Layout{}.Validate(cfg))
}

// TestMergeAdapters checks that merging a staged model's adapters on the
// GPU gives the weights the host merge gives (in f32; in half, to the
// rounding of one half-precision store).
func TestMergeAdapters(t *testing.T) {
	d := gputest.Device(t)
	cfg := stagedConfig
	for _, wf := range []shaders.WeightFormat{shaders.F32, shaders.Half} {
		lo := Layout{Frozen: []bool{false, true, true}, R: 5, Alpha: 10, Format: wf}
		s, err := NewStagedModel(d, cfg, lo, 7)
		require.NoError(t, err)
		randomise(t, s, 2)
		v, err := NewModel(d, cfg, 1)
		require.NoError(t, err)
		mergedInto(t, s, v)
		require.NoError(t, s.MergeAdapters())
		// f32: two roundings of the same float64 sum; half: one half ulp
		// (2^-11 relative) of values of order 0.2.
		mergeTol := tol.Tol{Atol: 1e-6, Rtol: 1e-5}
		if wf == shaders.Half {
			mergeTol = tol.Tol{Atol: 1e-4, Rtol: 1e-3}
		}
		for _, spec := range s.FrozenSpecs() {
			got, err := s.ReadParam(spec.Name)
			require.NoError(t, err)
			want, err := v.ReadParam(spec.Name)
			require.NoError(t, err)
			tol.Check(t, wf.String()+" merged "+spec.Name, got, tol.F64(want), mergeTol)
		}
		s.Release()
		v.Release()
	}
}
