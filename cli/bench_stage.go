package cli

import (
	"fmt"
	"math/rand/v2"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
	"github.com/step-gpu/step-gpu/step"
)

func init() { benchGenerators = append(benchGenerators, stageStepCases) }

// stageStepCases measures a whole training step of STEP's last stage at the
// preset's full depth: the lower layers of a 2-stage split (the planner's)
// frozen with LoRA rank 8 adapters, in half and in f32 weights, and the
// vanilla step with --recompute. Compared with train_step in the same run
// they give a stage's step time against vanilla's at the same depth. Their
// FLOPs are step.ModelStepFLOPs (a frozen layer skips its weight gradient).
func stageStepCases(cfg nn.Config, c *BenchCmd) []benchCase {
	var out []benchCase
	split, err := step.PaperModelOf(cfg, 8).Split(2)
	if err != nil || cfg.L < 2 {
		return nil
	}
	frozen := make([]bool, cfg.L)
	for l := range split.Added[0] {
		frozen[l] = true
	}
	for _, v := range []struct {
		op string
		lo nn.Layout
	}{
		{"stage_step", nn.Layout{Frozen: frozen, R: 8, Alpha: 16, Format: shaders.Half}},
		{"stage_step_f32", nn.Layout{Frozen: frozen, R: 8, Alpha: 16, Format: shaders.F32}},
		{"train_step_recompute", nn.Layout{Recompute: true}},
	} {
		shape := fmt.Sprintf("L%d frozen %d R%d %s C%d T%d B%d", cfg.L, v.lo.FrozenCount(), v.lo.R, v.lo.Format, cfg.C, cfg.T, cfg.B)
		if v.lo.FrozenCount() == 0 {
			shape = fmt.Sprintf("L%d recompute C%d T%d B%d", cfg.L, cfg.C, cfg.T, cfg.B)
		}
		lo := v.lo
		out = append(out, modelStepCase(v.op, shape, cfg, func(d *gpu.Device) (*nn.Model, error) {
			return nn.NewStagedModel(d, cfg, lo, 1)
		}))
	}
	return out
}

// modelStepCase measures one optimizer step (forward, backward, clipping,
// AdamW) of the model build makes, on fixed random tokens.
func modelStepCase(op, shape string, cfg nn.Config, build func(d *gpu.Device) (*nn.Model, error)) benchCase {
	tokens := cfg.B * cfg.T
	return benchCase{op: op, shape: shape, items: float64(tokens), unit: "tok",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			m, err := build(d)
			if err != nil {
				return nil, 0, 0, nil, err
			}
			rng := rand.New(rand.NewPCG(3, 3))
			toks, targets := make([]uint32, tokens), make([]uint32, tokens)
			for i := range toks {
				toks[i], targets[i] = uint32(rng.IntN(cfg.V)), uint32(rng.IntN(cfg.V))
			}
			stepNum := 0
			scale := 1 / float32(tokens)
			rec := func(r *gpu.Recorder) error {
				stepNum++
				for _, f := range []func() error{
					func() error { return m.SetBatch(r, toks, targets) },
					func() error { return m.ZeroGrads(r) },
					func() error { return m.Forward(r) },
					func() error { return m.Head(r, true, scale) },
					func() error { return m.Backward(r) },
					func() error { return m.OptimizerStep(r, shaders.AdamWDefaults(1e-4), stepNum) },
				} {
					if err := f(); err != nil {
						return err
					}
				}
				return nil
			}
			return rec, step.ModelStepFLOPs(m, tokens), 0, m.Release, nil
		}}
}
