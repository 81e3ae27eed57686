package step

import (
	"fmt"
	"math"

	"github.com/step-gpu/step-gpu/nn"
)

// Options configure a training run. Zero values are filled by Defaults.
type Options struct {
	// Model is the architecture; Model.V is the tokenizer's vocabulary size
	// to train (256 with ByteTokens).
	Model nn.Config `msgpack:"model"`
	// Data is the corpus spec ("" = the Go standard library source).
	Data string `msgpack:"data"`
	// RunDir holds the tokenizer, token cache, checkpoints and metrics.
	RunDir string `msgpack:"run_dir"`
	// ByteTokens uses the plain byte tokenizer (V = 256) instead of BPE.
	ByteTokens bool `msgpack:"byte_tokens"`
	// Steps is the number of optimizer steps; Tokens, if set, overrides it
	// (steps = ceil(Tokens / TotalBatch)).
	Steps  int   `msgpack:"steps"`
	Tokens int64 `msgpack:"tokens"`
	// TotalBatch is the tokens per optimizer step, a multiple of B*T;
	// TotalBatch/(B*T) micro-batches are accumulated per step.
	TotalBatch int `msgpack:"total_batch"`
	// Schedule: peak and final learning rate and warmup steps.
	LR     float64 `msgpack:"lr"`
	MinLR  float64 `msgpack:"min_lr"`
	Warmup int     `msgpack:"warmup"`
	// EvalEvery steps, over EvalBatches validation batches (0 = all).
	EvalEvery   int `msgpack:"eval_every"`
	EvalBatches int `msgpack:"eval_batches"`
	// LogEvery steps a log line and a metrics record are written.
	LogEvery int `msgpack:"log_every"`
	// SaveEvery steps a checkpoint is written (and at the end); Keep of them
	// are kept (0 = all).
	SaveEvery int `msgpack:"save_every"`
	Keep      int `msgpack:"keep"`
	// SampleEvery steps a sample of SampleTokens tokens is printed.
	SampleEvery  int `msgpack:"sample_every"`
	SampleTokens int `msgpack:"sample_tokens"`
	// Seed drives initialisation and data shuffling.
	Seed uint64 `msgpack:"seed"`
	// Shuffle visits training windows in a seeded random order.
	Shuffle bool `msgpack:"shuffle"`

	// Stages, when set, train the model in STEP stages (stages.go); Model
	// is then the final model and Steps the sum of the stages' trained steps.
	Stages []StageSpec `msgpack:"stages"`
	// LoRARank and LoRAAlpha are the default adapters of frozen layers;
	// LoRATargets limits the adapted linear maps; NoLoRA trains none (the
	// paper's "no adapters" ablation); FrozenF32 keeps frozen weights in
	// float32 instead of half precision.
	LoRARank    int      `msgpack:"lora_rank"`
	LoRAAlpha   float64  `msgpack:"lora_alpha"`
	LoRATargets []string `msgpack:"lora_targets"`
	NoLoRA      bool     `msgpack:"no_lora"`
	FrozenF32   bool     `msgpack:"frozen_f32"`
	// InitFrom names the checkpoint a run started from (`train --init`):
	// its model's architecture is the checkpoint's, which --resume keeps.
	InitFrom string `msgpack:"init_from"`
	// Recompute keeps only each block's input for the backward and
	// recomputes the block's activations there (nn.Layout.Recompute).
	Recompute bool `msgpack:"recompute"`
}

// Defaults fills unset fields with sensible values for the model size.
func (o Options) Defaults() Options {
	if o.RunDir == "" {
		o.RunDir = "runs/default"
	}
	if o.ByteTokens {
		o.Model.V = 256
	}
	bt := o.Model.B * o.Model.T
	if o.TotalBatch == 0 {
		o.TotalBatch = bt
	}
	if o.Steps == 0 && o.Tokens == 0 {
		o.Steps = 200
	}
	if o.Tokens > 0 && o.TotalBatch > 0 {
		o.Steps = int((o.Tokens + int64(o.TotalBatch) - 1) / int64(o.TotalBatch))
	}
	if o.LR == 0 {
		o.LR = 1e-3
	}
	if o.Staged() {
		o.Stages = append([]StageSpec(nil), o.Stages...)
		o.Steps = o.fillStages()
		// Each stage has its own schedule; the run-wide warmup filled from
		// an earlier step count must still fit the stages' total.
		o.Warmup = min(o.Warmup, o.Steps)
	}
	if o.MinLR == 0 {
		o.MinLR = o.LR / 10
	}
	if o.Warmup == 0 {
		o.Warmup = max(1, min(o.Steps/10, 200))
	}
	if o.LogEvery == 0 {
		o.LogEvery = 10
	}
	if o.EvalEvery == 0 {
		o.EvalEvery = max(o.LogEvery, o.Steps/5)
	}
	if o.EvalBatches == 0 {
		o.EvalBatches = 8
	}
	if o.SaveEvery == 0 {
		o.SaveEvery = max(o.LogEvery, o.Steps/4)
	}
	if o.Keep == 0 {
		o.Keep = 3
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = o.EvalEvery
	}
	if o.SampleTokens == 0 {
		o.SampleTokens = 64
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

// Validate returns an error naming the first bad option.
func (o Options) Validate() error {
	if err := o.Model.Validate(); err != nil {
		return err
	}
	bt := o.Model.B * o.Model.T
	switch {
	case o.Steps <= 0:
		return fmt.Errorf("steps must be positive, got %d", o.Steps)
	case o.TotalBatch < bt || o.TotalBatch%bt != 0:
		return fmt.Errorf("total batch %d tokens must be a positive multiple of batch*seq_len = %d", o.TotalBatch, bt)
	case o.Keep < 0:
		return fmt.Errorf("keep must be >= 0, got %d", o.Keep)
	case o.LogEvery <= 0 || o.EvalEvery <= 0 || o.SaveEvery <= 0 || o.SampleEvery < 0:
		return fmt.Errorf("log, eval and save intervals must be positive")
	case o.EvalBatches < 0:
		return fmt.Errorf("eval batches must be >= 0, got %d", o.EvalBatches)
	case o.Model.V < 257 && !o.ByteTokens:
		return fmt.Errorf("vocab size %d too small for BPE (at least 257; use --byte-tokens for 256)", o.Model.V)
	case math.IsNaN(o.LR) || math.IsNaN(o.MinLR):
		return fmt.Errorf("learning rate is NaN")
	}
	if o.Staged() {
		if err := o.validateStages(); err != nil {
			return err
		}
		lo := o.StageLayout(len(o.Stages))
		lo.Frozen = nil
		if err := lo.Validate(o.Model); err != nil {
			return err
		}
	}
	return o.Schedule().Validate()
}

// Schedule returns the run's learning-rate schedule.
func (o Options) Schedule() Schedule {
	return Schedule{MaxLR: o.LR, MinLR: o.MinLR, Warmup: o.Warmup, Steps: o.Steps}
}

// Accum returns the micro-batches per optimizer step.
func (o Options) Accum() int { return o.TotalBatch / (o.Model.B * o.Model.T) }

// presetRuns are the train presets: the model plus run length. tiny takes
// about a minute on lavapipe (2 cores), small about five; laptop is
// sized for an integrated GPU. --steps or --tokens run them longer.
var presetRuns = map[string]Options{
	"tiny":   {Steps: 120, LR: 3e-3, LogEvery: 10, EvalEvery: 40},
	"small":  {Steps: 50, LR: 2e-3, LogEvery: 10, EvalEvery: 25},
	"laptop": {Steps: 5000, LR: 1e-3, LogEvery: 20, EvalEvery: 250},
}

// Preset returns the run options of a preset name (the model from nn).
func Preset(name string) (Options, error) {
	cfg, err := nn.Preset(name)
	if err != nil {
		return Options{}, err
	}
	o := presetRuns[name]
	o.Model = cfg
	return o, nil
}
