package step

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// DefaultGrowAt is the fraction of a stage's planned steps after which the
// next growth fires (STEP.md).
const DefaultGrowAt = 0.75

// DefaultLoRARank and DefaultLoRAAlpha are the adapters of frozen layers
// when neither flags nor the plan file set them.
const (
	DefaultLoRARank  = 8
	DefaultLoRAAlpha = 16
)

// StageSpec is one stage of a STEP run, as a plan file's [[stage]] table
// writes it. Stage 1 trains a model of Added layers from scratch; each later
// stage starts by growing Added layers with Operator at Position, freezing
// the trained ones and attaching fresh adapters of rank LoRARank.
type StageSpec struct {
	Added int `toml:"added" msgpack:"added"`
	// Steps is the stage's planned step count S_i, the length of its own
	// warmup + cosine schedule; Tokens, if set, overrides it.
	Steps  int   `toml:"steps" msgpack:"steps"`
	Tokens int64 `toml:"tokens" msgpack:"tokens"`
	// LR, MinLR and Warmup set the stage's schedule (0: the run's LR, LR/10
	// and a tenth of the steps).
	LR     float64 `toml:"lr" msgpack:"lr"`
	MinLR  float64 `toml:"min_lr" msgpack:"min_lr"`
	Warmup int     `toml:"warmup" msgpack:"warmup"`
	// LoRARank and LoRAAlpha are the adapters attached to the layers frozen
	// in this stage (ignored in stage 1; 0: the run's).
	LoRARank  int     `toml:"lora_rank" msgpack:"lora_rank"`
	LoRAAlpha float64 `toml:"lora_alpha" msgpack:"lora_alpha"`
	// Operator and Position say how this stage's layers are grown
	// (ignored in stage 1; "": mean at upper).
	Operator string `toml:"operator" msgpack:"operator"`
	Position string `toml:"position" msgpack:"position"`
	// GrowAt is the fraction of Steps after which the next stage's growth
	// fires (0: DefaultGrowAt); the last stage runs all its steps.
	GrowAt float64 `toml:"grow_at" msgpack:"grow_at"`
}

// Run returns the steps a stage actually trains: floor(GrowAt * Steps)
// (at least 1) before a growth, all of Steps in the last stage.
func (s StageSpec) Run(last bool) int {
	if last {
		return s.Steps
	}
	return max(1, int(math.Floor(s.GrowAt*float64(s.Steps)+1e-9)))
}

// Schedule returns the stage's learning-rate schedule.
func (s StageSpec) Schedule() Schedule {
	return Schedule{MaxLR: s.LR, MinLR: s.MinLR, Warmup: s.Warmup, Steps: s.Steps}
}

// PlanFile is the TOML file `step-gpu train --step --plan FILE` reads: the
// run-wide adapter settings and one [[stage]] table per stage.
type PlanFile struct {
	// LoRATargets limits the adapted linear maps (nn.LinearNames).
	LoRATargets []string    `toml:"lora_targets"`
	FrozenF32   bool        `toml:"frozen_f32"`
	NoLoRA      bool        `toml:"no_lora"`
	Stages      []StageSpec `toml:"stage"`
}

// ReadPlanFile parses a plan file strictly: unknown keys are errors that
// name them, so a typo never silently falls back to a default.
func ReadPlanFile(path string) (PlanFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PlanFile{}, fmt.Errorf("plan file: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return PlanFile{}, fmt.Errorf("plan file %s is empty", path)
	}
	var p PlanFile
	md, err := toml.Decode(string(b), &p)
	if err != nil {
		return PlanFile{}, fmt.Errorf("plan file %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return PlanFile{}, fmt.Errorf("plan file %s: unknown keys %s", path, strings.Join(keys, ", "))
	}
	if len(p.Stages) == 0 {
		return PlanFile{}, fmt.Errorf("plan file %s has no [[stage]] tables", path)
	}
	return p, nil
}

// Apply puts the plan file's settings into the options.
func (p PlanFile) Apply(o *Options) {
	o.Stages = append([]StageSpec(nil), p.Stages...)
	if len(p.LoRATargets) > 0 {
		o.LoRATargets = p.LoRATargets
	}
	o.FrozenF32 = o.FrozenF32 || p.FrozenF32
	o.NoLoRA = o.NoLoRA || p.NoLoRA
}

// DefaultStages returns K stages for the options' final model: the layer
// split is the paper model's optimum for the run's LoRA rank (PaperModel.
// Split), and the run's steps are shared equally among the stages as
// trained steps, so each stage's planned steps are its share / grow_at.
func DefaultStages(o Options, K int) ([]StageSpec, error) {
	if K < 1 || K > o.Model.L {
		return nil, fmt.Errorf("stages: %d stages for %d layers (want 1..%d)", K, o.Model.L, o.Model.L)
	}
	added := []int{o.Model.L}
	if K > 1 {
		split, err := PaperModelOf(o.Model, o.loraRank()).Split(K)
		if err != nil {
			return nil, err
		}
		added = split.Added
	}
	if o.Steps < K {
		return nil, fmt.Errorf("stages: %d steps cannot be shared by %d stages", o.Steps, K)
	}
	out := make([]StageSpec, K)
	for i := range K {
		share := o.Steps / K
		if i < o.Steps%K {
			share++
		}
		out[i] = StageSpec{Added: added[i], Steps: share}
		if i < K-1 {
			out[i].Steps = int(math.Ceil(float64(share) / DefaultGrowAt))
			// Planned steps whose grow_at share is exactly the stage's share.
			out[i].GrowAt = float64(share) / float64(out[i].Steps)
		}
	}
	return out, nil
}

// loraRank returns the run's adapter rank (0 with NoLoRA).
func (o Options) loraRank() int {
	if o.NoLoRA {
		return 0
	}
	if o.LoRARank > 0 {
		return o.LoRARank
	}
	return DefaultLoRARank
}

// fillStages completes the stage specs from the run's options and returns
// the total trained steps.
func (o *Options) fillStages() int {
	total := 0
	for i := range o.Stages {
		s := &o.Stages[i]
		if s.Tokens > 0 && o.TotalBatch > 0 {
			s.Steps = int((s.Tokens + int64(o.TotalBatch) - 1) / int64(o.TotalBatch))
		}
		if s.LR == 0 {
			s.LR = o.LR
		}
		if s.MinLR == 0 {
			s.MinLR = s.LR / 10
		}
		if s.Warmup == 0 {
			s.Warmup = max(1, min(s.Steps/10, 200))
		}
		if s.GrowAt == 0 {
			s.GrowAt = DefaultGrowAt
		}
		if s.Operator == "" {
			s.Operator = OpMean
		}
		if s.Position == "" {
			s.Position = PosUpper
		}
		if s.LoRARank == 0 {
			s.LoRARank = o.loraRank()
		}
		if o.NoLoRA {
			s.LoRARank = 0
		}
		if s.LoRAAlpha == 0 {
			s.LoRAAlpha = o.LoRAAlpha
			if s.LoRAAlpha == 0 {
				s.LoRAAlpha = DefaultLoRAAlpha
			}
		}
		total += s.Run(i == len(o.Stages)-1)
	}
	return total
}

// validateStages checks the stage specs against the final model.
func (o Options) validateStages() error {
	sum := 0
	for i, s := range o.Stages {
		n := i + 1
		switch {
		case s.Added < 1:
			return fmt.Errorf("stage %d adds %d layers, want at least 1", n, s.Added)
		case s.Steps < 1:
			return fmt.Errorf("stage %d has %d steps, want at least 1", n, s.Steps)
		case !(s.GrowAt > 0 && s.GrowAt <= 1):
			return fmt.Errorf("stage %d: grow_at %g outside (0, 1]", n, s.GrowAt)
		case s.LoRARank < 0:
			return fmt.Errorf("stage %d: negative LoRA rank %d", n, s.LoRARank)
		case s.LoRARank > 0 && !(s.LoRAAlpha > 0):
			return fmt.Errorf("stage %d: LoRA alpha must be positive, got %g", n, s.LoRAAlpha)
		}
		if err := s.Schedule().Validate(); err != nil {
			return fmt.Errorf("stage %d: %w", n, err)
		}
		if i > 0 {
			if err := (Growth{Operator: s.Operator, Position: s.Position, Added: s.Added}).Validate(); err != nil {
				return fmt.Errorf("stage %d: %w", n, err)
			}
		}
		sum += s.Added
	}
	if sum != o.Model.L {
		return fmt.Errorf("stages add %d layers in all, but the model has %d (n_layers)", sum, o.Model.L)
	}
	return nil
}

// StageLayout returns the adapter template of stage i (1-based): rank,
// alpha, targets and frozen weight format; Frozen is left for the growth.
func (o Options) StageLayout(i int) nn.Layout {
	s := o.Stages[i-1]
	lo := nn.Layout{R: s.LoRARank, Alpha: s.LoRAAlpha, Targets: o.LoRATargets, Format: shaders.Half, Recompute: o.Recompute}
	if o.FrozenF32 {
		lo.Format = shaders.F32
	}
	if lo.R == 0 {
		lo.Alpha = 0
	}
	return lo
}

// StageConfig returns the model config of stage i (1-based): the final
// config with the layers trained up to that stage.
func (o Options) StageConfig(i int) nn.Config {
	c := o.Model
	c.L = 0
	for _, s := range o.Stages[:i] {
		c.L += s.Added
	}
	return c
}

// Staged reports whether the run trains in STEP stages.
func (o Options) Staged() bool { return len(o.Stages) > 0 }

// StagesWithin returns the smallest stage count K in 2..L whose largest
// stage, in the full plan of the run's settings (PlanWithin), fits budget
// bytes.
func StagesWithin(o Options, budget uint64) (int, error) {
	p, err := PlanWithin(o.Model, budget, PlanOptions{R: o.loraRank(), FrozenF32: o.FrozenF32, Targets: o.LoRATargets,
		Sampler: o.SampleEvery > 0, Recompute: o.Recompute})
	if err != nil {
		hint := "a larger budget, a smaller --batch or --seq-len"
		if !o.Recompute {
			hint = "--recompute, " + hint
		}
		return 0, fmt.Errorf("--budget: %w (try %s; `step-gpu plan` shows every stage)", err, hint)
	}
	return len(p.Stages), nil
}

// StageSummary describes a staged run's plan in one line: the layers each
// stage adds, the steps it trains (of its planned schedule) and the
// adapters; "" for vanilla runs.
func (o Options) StageSummary() string {
	if !o.Staged() {
		return ""
	}
	var adds, steps []string
	for i, s := range o.Stages {
		adds = append(adds, fmt.Sprint(s.Added))
		last := i == len(o.Stages)-1
		if last {
			steps = append(steps, fmt.Sprint(s.Run(true)))
		} else {
			steps = append(steps, fmt.Sprintf("%d of %d", s.Run(false), s.Steps))
		}
	}
	lo := o.StageLayout(len(o.Stages))
	adapters := "no LoRA"
	if lo.R > 0 {
		adapters = fmt.Sprintf("LoRA rank %d alpha %g", lo.R, lo.Alpha)
	}
	extra := ""
	if o.Recompute {
		extra = ", recompute"
	}
	return fmt.Sprintf("STEP: %d stages adding %s layers, training %s steps; frozen weights %s, %s%s",
		len(o.Stages), strings.Join(adds, "+"), strings.Join(steps, ", "), lo.Format, adapters, extra)
}
