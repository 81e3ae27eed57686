package cli

import (
	"fmt"
	"slices"

	"github.com/step-gpu/step-gpu/nn"
)

// benchShareOp is the --op value that measures the training step's share of
// the matmul kernel's speed (issue 3's figure) in one process.
const benchShareOp = "share"

// shareCases returns the cases the share needs, in the order they run: the
// matmul at the model's linear-layer shapes in every layout, the training
// step, and the matmuls again, so that a machine whose speed drifts during
// the run weighs both sides alike.
func shareCases(cfg nn.Config, c *BenchCmd) []benchCase {
	mm := modelMatmulCases(cfg)
	out := slices.Clone(mm)
	out = append(out, trainStepCases(cfg, c)...)
	return append(out, mm...)
}

// modelMatmulCases are matmulCases at the model's own linear-layer shapes
// (B*T x C x C and B*T x H x C) only.
func modelMatmulCases(cfg nn.Config) []benchCase {
	var out []benchCase
	N := cfg.B * cfg.T
	for _, bc := range matmulCases(cfg, &BenchCmd{}) {
		if bc.shape == fmt.Sprintf("%dx%dx%d", N, cfg.C, cfg.C) || bc.shape == fmt.Sprintf("%dx%dx%d", N, cfg.H, cfg.C) {
			out = append(out, bc)
		}
	}
	return out
}

// shareOf returns the share measurement from a share run: the training
// step's GFLOP/s divided by the mean GFLOP/s of the matmuls.
func shareOf(ms []Measurement) (Measurement, error) {
	var sum float64
	var n int
	var step *Measurement
	for i, m := range ms {
		switch {
		case m.Op == "train_step":
			step = &ms[i]
		case m.GFLOPS > 0:
			sum += m.GFLOPS
			n++
		}
	}
	if step == nil || n == 0 || sum == 0 {
		return Measurement{}, fmt.Errorf("share: the run measured no training step or no matmul")
	}
	mean := sum / float64(n)
	share := step.GFLOPS / mean
	return Measurement{Op: "train_step_share", Shape: step.Shape, MS: step.MS, GFLOPS: step.GFLOPS, Share: share,
		Note: fmt.Sprintf("%.0f%% of the matmul kernel's %.2f GFLOP/s (mean of %d at the model's shapes)",
			100*share, mean, n)}, nil
}
