package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/step-gpu/step-gpu/nn/hf"
	"github.com/step-gpu/step-gpu/step"
)

// ExportCmd is `step-gpu export`.
type ExportCmd struct {
	Checkpoint string `required:"" help:"Checkpoint file (a run's checkpoints/step-*.ckpt)." type:"existingfile"`
	Format     string `help:"Output format: hf (a Hugging Face LLaMA folder: config.json, model.safetensors, tokenizer.json)." enum:"hf" default:"hf"`
	Out        string `required:"" help:"Folder to write (created if needed; files of the same names are replaced)." placeholder:"DIR"`
}

// Run converts the checkpoint's model, merging any LoRA adapters into their
// frozen base weights first.
func (c *ExportCmd) Run(e *Env) error {
	l, err := step.OpenCheckpoint(c.Checkpoint)
	if err != nil {
		return err
	}
	defer l.R.Close()
	weights, shapes, err := step.ReadWeights(l)
	if err != nil {
		return err
	}
	scale := 0.0
	if l.Layout.R > 0 {
		scale = l.Layout.Alpha / float64(l.Layout.R)
	}
	merged, err := hf.MergeAdapters(weights, shapes, scale)
	if err != nil {
		return fmt.Errorf("export %s: %w", c.Checkpoint, err)
	}
	if len(merged) > 0 && l.Layout.R == 0 {
		return fmt.Errorf("export %s: the checkpoint has LoRA adapters but no layout giving their rank and alpha", c.Checkpoint)
	}
	if err := hf.Export(c.Out, l.Config, weights, l.Tok); err != nil {
		return err
	}
	files := []string{hf.ConfigFile, hf.WeightsFile, hf.TokenizerFile}
	fmt.Fprintf(e.Stdout, "exported %s (step %d, %d parameters) to %s: %s\n", c.Checkpoint, l.R.Header.Step, l.Config.Params(),
		filepath.Clean(c.Out), strings.Join(files, ", "))
	if len(merged) > 0 {
		fmt.Fprintf(e.Stdout, "merged %d LoRA adapters into their base weights (scale alpha/R = %g)\n", len(merged), scale)
	}
	return nil
}
