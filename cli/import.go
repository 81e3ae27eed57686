package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/step-gpu/step-gpu/nn/hf"
	"github.com/step-gpu/step-gpu/step"
)

// ImportCmd is `step-gpu import`.
type ImportCmd struct {
	From   string `required:"" help:"Hugging Face LLaMA folder: config.json, model.safetensors (or a sharded index) and, optionally, tokenizer.json." type:"existingdir" placeholder:"DIR"`
	Out    string `required:"" help:"Checkpoint file to write, e.g. runs/NAME/checkpoints/step-00000000.ckpt." placeholder:"CKPT"`
	SeqLen int    `name:"seq-len" help:"Context length T to record (default: max_position_embeddings)."`
	Batch  int    `help:"Micro-batch size B to record (sequences)." default:"8"`
	Force  bool   `help:"Replace --out if it exists."`
}

// Run converts the folder and writes a weights-only checkpoint that eval and
// generate read like any other.
func (c *ImportCmd) Run(e *Env) error {
	if c.SeqLen < 0 || c.Batch <= 0 {
		return fmt.Errorf("--seq-len must not be negative and --batch must be positive")
	}
	if _, err := os.Stat(c.Out); err == nil && !c.Force {
		return fmt.Errorf("%s already exists: pass --force to replace it", c.Out)
	}
	im, err := hf.Import(c.From, c.Batch, c.SeqLen)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.Out), 0o755); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	from, err := filepath.Abs(c.From)
	if err != nil {
		from = c.From
	}
	if err := step.SaveWeights(c.Out, im.Config, im.Tok, im.Weights, map[string]string{"imported_from": from}); err != nil {
		return err
	}
	for _, n := range im.Notes {
		fmt.Fprintf(e.Stdout, "note: %s\n", n)
	}
	cfg := im.Config
	fmt.Fprintf(e.Stdout, "imported %s to %s: vocab %d, d_model %d, %d layers, %d heads, d_ff %d, seq_len %d, %d parameters\n",
		c.From, c.Out, cfg.V, cfg.C, cfg.L, cfg.NH, cfg.H, cfg.T, cfg.Params())
	return nil
}
