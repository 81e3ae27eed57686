package step

import (
	"errors"
	"fmt"
	"os"

	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/nn/tokenizer"
)

// AdoptInit prepares a new run that starts from a checkpoint's weights
// (`train --init`, e.g. a model brought in by `step-gpu import`): the run's
// model takes the checkpoint's architecture (width, heads, FFN, vocabulary,
// RoPE, norm epsilon; batch and sequence length stay the run's), a vanilla
// run its depth, and a STEP run's first stage must be exactly its layers.
// The checkpoint's tokenizer becomes the run's (written to the run folder
// unless the same one is there). Checkpoints with unmerged adapters are
// refused: their frozen weights alone are not the model.
func AdoptInit(o *Options, l *Loaded) error {
	if l.Layout.R > 0 && l.Layout.FrozenCount() > 0 {
		return fmt.Errorf("--init %s: the checkpoint holds LoRA adapters on frozen layers; export it (step-gpu export) and import "+
			"the merged model to start from it", l.R.Path())
	}
	c := l.Config
	adoptArch(&o.Model, c)
	o.ByteTokens = false
	o.InitFrom = l.R.Path()
	if o.Staged() {
		if got := o.Stages[0].Added; got != c.L {
			return fmt.Errorf("--init %s has %d layers, but the first STEP stage trains %d: use a --plan file whose first "+
				"stage adds %d (examples/plan.toml)", l.R.Path(), c.L, got, c.L)
		}
	} else {
		o.Model.L = c.L
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("--init %s: %w", l.R.Path(), err)
	}
	return adoptTokenizer(o.RunDir, l.Tok)
}

// adoptArch gives m the width, heads, FFN, vocabulary, RoPE base and norm
// epsilon of c.
func adoptArch(m *nn.Config, c nn.Config) {
	m.C, m.NH, m.H, m.V, m.RoPE, m.NormEps = c.C, c.NH, c.H, c.V, c.RoPE, c.NormEps
}

// ResumeInit gives a run resumed with --resume the architecture of a run
// that began with --init (its flags describe the preset, not the imported
// model); other runs are left alone.
func ResumeInit(o *Options, l *Loaded) {
	if l.Opt.InitFrom == "" {
		return
	}
	f := l.Final()
	adoptArch(&o.Model, f)
	if !o.Staged() {
		o.Model.L = f.L
	}
	o.InitFrom, o.ByteTokens = l.Opt.InitFrom, false
}

// adoptTokenizer writes tok as the run's tokenizer, or checks that the run
// folder already holds the same one.
func adoptTokenizer(runDir string, tok *tokenizer.Tokenizer) error {
	path := TokenizerPath(runDir)
	want, err := tok.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stat(path)
	switch {
	case err == nil:
		old, err := tokenizer.Load(path)
		if err != nil {
			return err
		}
		if b, err := old.MarshalJSON(); err != nil || string(b) != string(want) {
			return fmt.Errorf("%s holds another tokenizer than the --init checkpoint's: choose another --run-dir", path)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	return tok.Save(path)
}

// InitFrom loads a checkpoint's weights into the trainer's fresh model (the
// optimizer state stays zero and the step at 0): the model must have the
// checkpoint's tensors, up to batch and sequence length.
func (t *Trainer) InitFrom(l *Loaded) error {
	a, b := l.Config, t.Model.Cfg
	a.B, a.T = b.B, b.T
	if err := SameModel(a, b); err != nil {
		return fmt.Errorf("--init %s: %w", l.R.Path(), err)
	}
	probe := *l
	probe.Config = a
	return LoadWeights(&probe, t.Model, false)
}
