package cli

import (
	"fmt"
	"math/rand/v2"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
	"github.com/step-gpu/step-gpu/step"
)

func init() { benchGenerators = append(benchGenerators, trainStepCases) }

// trainStepCases measures one whole training step of the preset's model
// (forward, backward, clipping, AdamW) on random tokens. Its FLOPs are
// step.StepFLOPs, so GFLOP/s here divided by the matmul kernel's GFLOP/s at
// the model's shapes is the step's share of the kernel's speed.
func trainStepCases(cfg nn.Config, c *BenchCmd) []benchCase {
	tokens := cfg.B * cfg.T
	shape := fmt.Sprintf("V%d C%d L%d NH%d H%d T%d B%d", cfg.V, cfg.C, cfg.L, cfg.NH, cfg.H, cfg.T, cfg.B)
	return []benchCase{{op: "train_step", shape: shape, items: float64(tokens), unit: "tok",
		setup: func(d *gpu.Device) (func(*gpu.Recorder) error, float64, float64, func(), error) {
			m, err := nn.NewModel(d, cfg, 1)
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
			return rec, step.StepFLOPs(cfg, tokens), 0, m.Release, nil
		}}}
}
