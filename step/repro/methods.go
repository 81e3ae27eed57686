package repro

import (
	"fmt"
	"slices"
	"strings"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// Method is one training recipe of the reproduction: vanilla pre-training
// (Stages 0) or STEP with Stages stages from the planner's split, grown with
// Operator at Position; NoLoRA and FrozenF32 are the ablations that train
// no adapters and keep frozen weights in float32.
type Method struct {
	// Name is the method's run folder under the output folder.
	Name string `json:"name"`
	// Label names the method in tables and plots.
	Label     string `json:"label"`
	Stages    int    `json:"stages"`
	Operator  string `json:"operator,omitempty"`
	Position  string `json:"position,omitempty"`
	NoLoRA    bool   `json:"no_lora,omitempty"`
	FrozenF32 bool   `json:"frozen_f32,omitempty"`
	// Ablation is the ablation's name ("" for vanilla and the STEP runs).
	Ablation string `json:"ablation,omitempty"`
}

// Ablations lists the ablation names in report order: each changes one
// factor of STEP (growth operator, growth position, adapters, frozen weight
// precision) and keeps the rest at the paper's default (mean at upper,
// LoRA adapters, half-precision frozen weights).
var Ablations = []string{
	step.OpCopy, step.OpIdentity, step.OpStack,
	step.PosIntermediate, step.PosLower, step.PosRandom,
	"no-lora", "frozen-f32",
}

// Vanilla is ordinary pre-training of the final model.
var Vanilla = Method{Name: "vanilla", Label: "vanilla"}

// STEP returns STEP with K stages and the paper's defaults.
func STEP(K int) Method {
	return Method{Name: fmt.Sprintf("step-%d", K), Label: fmt.Sprintf("STEP-%d", K), Stages: K,
		Operator: step.OpMean, Position: step.PosUpper}
}

// Ablation returns the K-stage STEP variant that the named ablation
// changes, or an error listing the known names.
func Ablation(K int, name string) (Method, error) {
	m := STEP(K)
	switch name {
	case step.OpCopy, step.OpIdentity, step.OpStack:
		m.Operator = name
	case step.PosIntermediate, step.PosLower, step.PosRandom:
		m.Position = name
	case "no-lora":
		m.NoLoRA = true
	case "frozen-f32":
		m.FrozenF32 = true
	default:
		return Method{}, fmt.Errorf("unknown ablation %q (want all or some of %s)", name, strings.Join(Ablations, ", "))
	}
	m.Name += "-" + name
	m.Label += " " + name
	m.Ablation = name
	return m, nil
}

// Methods returns the methods of a reproduction: vanilla, STEP with each
// stage count of stages (each at least 2, no repeats), and the named
// ablations of STEP with ablationStages stages ("all" for every one).
func Methods(stages []int, ablations []string, ablationStages int) ([]Method, error) {
	out := []Method{Vanilla}
	if len(stages) == 0 && len(ablations) == 0 {
		return nil, fmt.Errorf("stages: give at least one STEP stage count to compare with vanilla")
	}
	for i, K := range stages {
		if K < 2 {
			return nil, fmt.Errorf("stages: STEP needs at least 2 stages, got %d (vanilla is always run)", K)
		}
		if slices.Contains(stages[:i], K) {
			return nil, fmt.Errorf("stages: %d is listed twice", K)
		}
		out = append(out, STEP(K))
	}
	if len(ablations) == 0 {
		return out, nil
	}
	if ablationStages < 2 {
		return nil, fmt.Errorf("ablations: STEP needs at least 2 stages, got %d", ablationStages)
	}
	names := ablations
	if slices.Contains(ablations, "all") {
		if len(ablations) > 1 {
			return nil, fmt.Errorf("ablations: all already names every ablation; give it alone")
		}
		names = Ablations
	}
	for i, n := range names {
		m, err := Ablation(ablationStages, n)
		if err != nil {
			return nil, fmt.Errorf("ablations: %w", err)
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("ablations: %s is listed twice", n)
		}
		out = append(out, m)
	}
	return out, nil
}

// Options returns the training options of the method from the run's base
// options (already through Defaults, so Steps is the run's total): the
// same model, data, seed and trained steps for every method, with STEP's
// stages from the planner's split. The split is always the one with
// adapters, so that the no-LoRA ablation changes the adapters only.
// Sampling is off: the sampler's buffers would count in every stage's
// memory, and samples are not part of the comparison.
func (m Method) Options(base step.Options, runDir string) (step.Options, error) {
	o := base
	o.RunDir = runDir
	o.Stages = nil
	if m.Stages > 0 {
		stages, err := step.DefaultStages(o, m.Stages)
		if err != nil {
			return o, fmt.Errorf("%s: %w", m.Name, err)
		}
		for i := range stages {
			if i > 0 {
				stages[i].Operator, stages[i].Position = m.Operator, m.Position
			}
		}
		o.Stages, o.NoLoRA, o.FrozenF32 = stages, m.NoLoRA, m.FrozenF32
	}
	o = o.Defaults()
	o.SampleEvery = 0
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%s: %w", m.Name, err)
	}
	if o.Steps != base.Steps {
		return o, fmt.Errorf("%s trains %d steps, vanilla %d: the stages must share the run's steps", m.Name, o.Steps, base.Steps)
	}
	return o, nil
}

// Describe says in one line how the method trains.
func (m Method) Describe(o step.Options) string {
	if m.Stages == 0 {
		return fmt.Sprintf("vanilla pre-training of %d layers", o.Model.L)
	}
	split := make([]string, len(o.Stages))
	for i, s := range o.Stages {
		split[i] = fmt.Sprint(s.Added)
	}
	lora := fmt.Sprintf("LoRA rank %d", o.Stages[len(o.Stages)-1].LoRARank)
	if m.NoLoRA {
		lora = "no LoRA"
	}
	frozen := "half"
	if m.FrozenF32 {
		frozen = "f32"
	}
	return fmt.Sprintf("STEP, %d stages adding %s layers, %s at %s, %s, frozen weights in %s",
		m.Stages, strings.Join(split, "+"), m.Operator, m.Position, lora, frozen)
}

// DefaultTokens is the default reproduction's tokens per method, sized so
// that vanilla, STEP-2 and STEP-3 of DefaultOptions' model together take
// about half an hour on a CPU adapter (lavapipe, 2 cores).
const DefaultTokens = 500 * 1024

// DefaultOptions returns the default reproduction's base options: an
// 8-layer model of width 128 (the tiny preset's width and vocabulary, twice
// its depth, so that three stages have layers to share), DefaultTokens
// tokens in steps of one (8, 128) batch, the paper's LoRA rank and eight
// fixed validation batches.
func DefaultOptions() step.Options {
	return step.Options{
		Model:       nn.Config{V: 512, C: 128, L: 8, NH: 4, H: 344, T: 128, B: 8, RoPE: 10000, NormEps: 1e-5},
		Tokens:      DefaultTokens,
		LR:          2e-3,
		EvalBatches: 8,
		Shuffle:     true,
		Seed:        1,
		LoRARank:    step.DefaultLoRARank,
	}
}
