package cli

import (
	"fmt"

	"github.com/step-gpu/step-gpu/step"
)

// StepFlags are `step-gpu train`'s STEP options.
type StepFlags struct {
	Step         bool     `help:"Train in STEP stages: train a shallow model, grow it, freeze what was trained (LoRA adapters on the frozen layers) and train the new layers; repeat." name:"step"`
	Stages       int      `help:"STEP stages K (with --step; the layer split is the planner's optimum)." default:"3" placeholder:"K"`
	Budget       string   `help:"With --step: the smallest K whose largest stage fits this many bytes in the full plan (KiB, MiB, GiB or KB, MB, GB suffixes)." placeholder:"BYTES"`
	Plan         string   `help:"TOML plan file, one [[stage]] table per stage (docs/STEP.md; example in examples/plan.toml); implies --step." placeholder:"FILE"`
	LoRARank     int      `name:"lora-rank" help:"LoRA rank of the adapters on frozen layers (default 8)." placeholder:"R"`
	LoRAAlpha    float64  `name:"lora-alpha" help:"LoRA alpha; adapters are scaled by alpha/rank (default 16)."`
	LoRATargets  []string `name:"lora-targets" help:"Adapt only these linear maps (attn.wq, attn.wk, attn.wv, attn.wo, mlp.w1, mlp.w3, mlp.w2; default all seven)." placeholder:"MAP,..."`
	NoLoRA       bool     `name:"no-lora" help:"Attach no adapters: train only the new layers (the paper's ablation)."`
	FrozenF32    bool     `name:"frozen-f32" help:"Keep frozen weights in float32 instead of half precision."`
	GrowOp       string   `name:"grow-op" help:"Growth operator: mean, copy, identity or stack." default:"mean"`
	GrowPosition string   `name:"grow-position" help:"Where new layers go: upper, intermediate, lower or random." default:"upper"`
	GrowAt       float64  `name:"grow-at" help:"Fraction of a stage's planned steps after which the next growth fires (default 0.75)."`
	Recompute    bool     `help:"Save only each layer's input for the backward and recompute the rest there: less activation memory for about one more forward pass per step."`
}

// apply turns the flags into staged options (o already has its defaults),
// or leaves o vanilla without --step or --plan.
func (f *StepFlags) apply(o *step.Options) error {
	o.Recompute = f.Recompute
	if !f.Step && f.Plan == "" {
		for _, set := range []struct {
			name string
			on   bool
		}{{"--lora-rank", f.LoRARank != 0}, {"--no-lora", f.NoLoRA}, {"--frozen-f32", f.FrozenF32}, {"--budget", f.Budget != ""},
			{"--lora-targets", len(f.LoRATargets) > 0}, {"--grow-at", f.GrowAt != 0}} {
			if set.on {
				return fmt.Errorf("%s applies to STEP training: add --step", set.name)
			}
		}
		return nil
	}
	if f.LoRARank < 0 {
		return fmt.Errorf("--lora-rank must not be negative, got %d", f.LoRARank)
	}
	if f.GrowAt < 0 || f.GrowAt > 1 {
		return fmt.Errorf("--grow-at must be in (0, 1], got %g", f.GrowAt)
	}
	o.LoRARank, o.LoRAAlpha, o.LoRATargets, o.NoLoRA, o.FrozenF32 = f.LoRARank, f.LoRAAlpha, f.LoRATargets, f.NoLoRA, f.FrozenF32
	if f.Plan != "" {
		p, err := step.ReadPlanFile(f.Plan)
		if err != nil {
			return err
		}
		p.Apply(o)
	} else {
		K := f.Stages
		if f.Budget != "" {
			budget, err := parseByteSize(f.Budget)
			if err != nil {
				return fmt.Errorf("--budget: %w", err)
			}
			if K, err = step.StagesWithin(*o, budget); err != nil {
				return err
			}
		}
		stages, err := step.DefaultStages(*o, K)
		if err != nil {
			return err
		}
		for i := range stages {
			stages[i].Operator, stages[i].Position = f.GrowOp, f.GrowPosition
			if f.GrowAt > 0 && i < len(stages)-1 {
				share := stages[i].Run(false)
				stages[i].GrowAt = f.GrowAt
				stages[i].Steps = max(1, int(float64(share)/f.GrowAt+0.5))
			}
		}
		o.Stages = stages
	}
	*o = o.Defaults()
	return o.Validate()
}
