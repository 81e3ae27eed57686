package cli

import (
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/step-gpu/step-gpu/step"
	"github.com/step-gpu/step-gpu/step/repro"
)

// ReproCmd is `step-gpu repro`: the laptop-scale reproduction of the STEP
// paper (docs/REPRO.md).
type ReproCmd struct {
	Preset         string   `help:"Model and run preset (${presets}); default: the reproduction's own model (C 128, L 8, NH 4, H 344, T 128, V 512) for 512000 tokens per method." placeholder:"NAME"`
	Data           string   `help:"Corpus: files, directories, globs (comma-separated). Default: the Go standard library source." placeholder:"SPEC"`
	Out            string   `help:"Folder for the shared tokenizer and token cache, one run folder per method, results.json, results.md and the plots." default:"runs/repro"`
	ByteTokens     bool     `name:"byte-tokens" help:"Use plain bytes (256 + end-of-document) instead of a trained BPE."`
	Steps          int      `help:"Optimizer steps per method."`
	Tokens         int64    `help:"Tokens per method instead of --steps (every method trains the same tokens)."`
	TotalBatch     int      `name:"total-batch" help:"Tokens per optimizer step (a multiple of batch*seq-len)."`
	LR             float64  `help:"Peak learning rate (every stage of STEP uses it with its own warmup and cosine decay)."`
	EvalEvery      int      `name:"eval-every" help:"Validate every N steps (default: a tenth of the steps, and at every growth)."`
	EvalBatches    int      `name:"eval-batches" help:"Validation batches per evaluation, the same for every method (default 8)."`
	LogEvery       int      `name:"log-every" help:"Log every N steps (default: half of --eval-every)."`
	Seed           uint64   `help:"Seed for initialisation and shuffling, the same for every method." default:"1"`
	Shuffle        bool     `help:"Visit training windows in a seeded random order." default:"true" negatable:""`
	Stages         []int    `help:"STEP stage counts to compare with vanilla, each at least 2 (default 2,3)." default:"2,3" placeholder:"K"`
	Ablations      []string `help:"STEP variants, each changing one factor: all, or some of copy, identity, stack (growth operator), intermediate, lower, random (position), no-lora, frozen-f32." placeholder:"NAME"`
	AblationStages int      `name:"ablation-stages" help:"Stages of the STEP run the ablations vary (default 3)." default:"3" placeholder:"K"`
	LoRARank       int      `name:"lora-rank" help:"LoRA rank of the adapters on frozen layers (default 8)." default:"8" placeholder:"R"`
	LoRAAlpha      float64  `name:"lora-alpha" help:"LoRA alpha; adapters are scaled by alpha/rank (default 16)."`
	Recompute      bool     `help:"Every method recomputes block activations in the backward (train --recompute): less activation memory, about a third more compute."`
	Overwrite      bool     `help:"Replace method run folders that --out already holds."`
	Replot         bool     `help:"Train nothing: read --out's results.json and write the table, results.md and the plots again."`
	ModelFlags     `embed:""`
}

// config turns the flags into a reproduction.
func (c *ReproCmd) config() (repro.Config, error) {
	o := repro.DefaultOptions()
	if c.Preset != "" {
		p, err := step.Preset(c.Preset)
		if err != nil {
			return repro.Config{}, err
		}
		o.Model, o.Steps, o.Tokens, o.LR = p.Model, p.Steps, 0, p.LR
	}
	for _, v := range []struct {
		name string
		x    int
	}{{"--steps", c.Steps}, {"--total-batch", c.TotalBatch}, {"--eval-every", c.EvalEvery}, {"--eval-batches", c.EvalBatches},
		{"--log-every", c.LogEvery}, {"--lora-rank", c.LoRARank}, {"--d-model", c.DModel}, {"--layers", c.Layers},
		{"--heads", c.Heads}, {"--d-ff", c.DFF}, {"--seq-len", c.SeqLen}, {"--batch", c.Batch}, {"--vocab", c.Vocab}} {
		if v.x < 0 {
			return repro.Config{}, fmt.Errorf("%s must not be negative, got %d", v.name, v.x)
		}
	}
	switch {
	case c.Tokens < 0:
		return repro.Config{}, fmt.Errorf("--tokens must not be negative, got %d", c.Tokens)
	case c.LR < 0 || math.IsNaN(c.LR):
		return repro.Config{}, fmt.Errorf("--lr must be positive, got %g", c.LR)
	case c.LoRAAlpha < 0 || math.IsNaN(c.LoRAAlpha):
		return repro.Config{}, fmt.Errorf("--lora-alpha must be positive, got %g", c.LoRAAlpha)
	case c.LoRARank == 0:
		return repro.Config{}, fmt.Errorf("--lora-rank must be positive (the no-lora ablation trains without adapters)")
	}
	m := &o.Model
	setInt(&m.C, c.DModel)
	setInt(&m.L, c.Layers)
	setInt(&m.NH, c.Heads)
	setInt(&m.H, c.DFF)
	setInt(&m.T, c.SeqLen)
	setInt(&m.B, c.Batch)
	setInt(&m.V, c.Vocab)
	setFloat(&m.RoPE, c.RoPE)
	setFloat(&m.NormEps, c.NormEps)
	if c.Steps > 0 {
		o.Steps, o.Tokens = c.Steps, 0
	}
	if c.Tokens > 0 {
		o.Tokens = c.Tokens
	}
	setInt(&o.TotalBatch, c.TotalBatch)
	setFloat(&o.LR, c.LR)
	setInt(&o.EvalEvery, c.EvalEvery)
	setInt(&o.EvalBatches, c.EvalBatches)
	setInt(&o.LogEvery, c.LogEvery)
	o.LoRARank, o.LoRAAlpha = c.LoRARank, c.LoRAAlpha
	o.Data, o.ByteTokens, o.Seed, o.Shuffle, o.Recompute = c.Data, c.ByteTokens, c.Seed, c.Shuffle, c.Recompute
	if o.ByteTokens {
		m.V = 257
	}
	cfg := repro.Config{Base: o, Out: c.Out, Stages: c.Stages, Ablations: c.Ablations, AblationStages: c.AblationStages,
		Overwrite: c.Overwrite}
	// Every method's options are checked here, before a device is opened.
	_, _, err := cfg.Prepare()
	return cfg, err
}

// Run trains every method and prints the results table.
func (c *ReproCmd) Run(e *Env) error {
	if c.Replot {
		rs, err := repro.ReadResults(c.Out)
		if err != nil {
			return err
		}
		if err := rs.Write(c.Out); err != nil {
			return err
		}
		rs.PrintTable(e.Stdout)
		c.wrote(e)
		return nil
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	d, err := e.open()
	if err != nil {
		return err
	}
	defer d.Close()
	cfg.Log, cfg.Progress = e.Stdout, tokenProgress(e)
	start := time.Now()
	rs, err := repro.Run(d, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "\nrepro: %d methods in %s\n", len(rs.Methods), time.Since(start).Round(time.Second))
	rs.PrintTable(e.Stdout)
	c.wrote(e)
	return nil
}

// wrote says where the results are.
func (c *ReproCmd) wrote(e *Env) {
	fmt.Fprintf(e.Stdout, "wrote %s, %s, %s and %s\n", filepath.Join(c.Out, "results.json"), filepath.Join(c.Out, "results.md"),
		filepath.Join(c.Out, repro.LossPlot), filepath.Join(c.Out, repro.MemoryPlot))
}
