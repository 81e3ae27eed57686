package cli

import (
	"fmt"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
)

func init() { benchGenerators = append(benchGenerators, trainStepCases) }

// trainStepCases measures one whole training step of the preset's model
// (forward, backward, clipping, AdamW) on random tokens. Its FLOPs are
// step.StepFLOPs, so GFLOP/s here divided by the matmul kernel's GFLOP/s at
// the model's shapes is the step's share of the kernel's speed (the FLOPs
// of a vanilla model's step.ModelStepFLOPs are step.StepFLOPs).
func trainStepCases(cfg nn.Config, c *BenchCmd) []benchCase {
	shape := fmt.Sprintf("V%d C%d L%d NH%d H%d T%d B%d", cfg.V, cfg.C, cfg.L, cfg.NH, cfg.H, cfg.T, cfg.B)
	return []benchCase{modelStepCase("train_step", shape, cfg, func(d *gpu.Device) (*nn.Model, error) {
		return nn.NewModel(d, cfg, 1)
	})}
}
