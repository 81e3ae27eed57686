package cli

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// EvalCmd is `step-gpu eval`.
type EvalCmd struct {
	Checkpoint string `required:"" help:"Checkpoint file (a run's checkpoints/step-*.ckpt)." type:"existingfile"`
	Data       string `help:"Corpus to evaluate on (its validation split); default: the run's own corpus." placeholder:"SPEC"`
	Batches    int    `help:"Validation batches (0 = the whole split)."`
}

// Run prints the validation loss and perplexity.
func (c *EvalCmd) Run(e *Env) error {
	l, err := step.OpenCheckpoint(c.Checkpoint)
	if err != nil {
		return err
	}
	defer l.R.Close()
	spec := c.Data
	if spec == "" {
		spec = l.Opt.Data
	}
	runDir := filepath.Dir(filepath.Dir(c.Checkpoint))
	corpus, split, err := step.OpenCorpus(spec, e.Stderr)
	if err != nil {
		return err
	}
	d, err := e.open()
	if err != nil {
		return err
	}
	defer d.Close()
	data, err := step.Loaders(corpus, split, l.Tok, filepath.Join(runDir, "eval-tokens"), l.Config.B, l.Config.T, false, 1,
		e.Stderr, tokenProgress(e))
	if err != nil {
		return err
	}
	defer data.Close()
	o := l.Opt
	o.Model = l.Config
	o = o.Defaults()
	t, err := step.NewTrainer(d, o, data, e.Stderr)
	if err != nil {
		return err
	}
	defer t.Release()
	if err := t.LoadModel(l); err != nil {
		return err
	}
	loss, err := t.Evaluate(c.Batches)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "checkpoint %s (step %d): val loss %.4f | val ppl %.3f\n", c.Checkpoint, l.R.Header.Step, loss, math.Exp(loss))
	return nil
}

// GenerateCmd is `step-gpu generate`.
type GenerateCmd struct {
	Checkpoint  string  `required:"" help:"Checkpoint file." type:"existingfile"`
	Prompt      string  `required:"" help:"Text to continue."`
	Tokens      int     `help:"Tokens to generate." default:"200"`
	Temperature float64 `help:"Sampling temperature (0 = greedy)." default:"0.8"`
	TopK        int     `name:"top-k" help:"Sample from the K most likely tokens (0 = all)." default:"40"`
	Seed        uint64  `help:"Sampling seed." default:"1"`
}

// Run prints the prompt and its continuation.
func (c *GenerateCmd) Run(e *Env) error {
	if c.Tokens < 1 || c.Temperature < 0 || c.TopK < 0 {
		return fmt.Errorf("--tokens must be positive and --temperature, --top-k non-negative")
	}
	l, err := step.OpenCheckpoint(c.Checkpoint)
	if err != nil {
		return err
	}
	defer l.R.Close()
	d, err := e.open()
	if err != nil {
		return err
	}
	defer d.Close()
	cfg := l.Config
	cfg.B = 1
	m, err := nn.NewInferenceModel(d, cfg, l.Layout)
	if err != nil {
		return err
	}
	defer m.Release()
	if err := step.LoadWeights(l, m, false); err != nil {
		return err
	}
	ids := l.Tok.Encode(nil, []byte(c.Prompt))
	if len(ids) == 0 {
		return fmt.Errorf("--prompt is empty")
	}
	out, err := m.Generate(ids, c.Tokens, nn.SampleOptions{Temperature: c.Temperature, TopK: c.TopK, Stop: int64(l.Tok.EOT())},
		rand.New(rand.NewPCG(c.Seed, 0)))
	if err != nil {
		return err
	}
	text, err := l.Tok.Decode(nil, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, string(text))
	return nil
}
