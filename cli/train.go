package cli

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/step-gpu/step-gpu/shaders"
	"github.com/step-gpu/step-gpu/step"
)

// ModelFlags override a preset's model config.
type ModelFlags struct {
	DModel  int     `name:"d-model" help:"Model width C."`
	Layers  int     `help:"Transformer blocks L."`
	Heads   int     `help:"Attention heads NH."`
	DFF     int     `name:"d-ff" help:"SwiGLU hidden width H."`
	SeqLen  int     `name:"seq-len" help:"Context length T."`
	Batch   int     `help:"Micro-batch size B (sequences)."`
	Vocab   int     `help:"BPE vocabulary size to train (default: the preset's)."`
	RoPE    float64 `name:"rope-theta" help:"RoPE base."`
	NormEps float64 `name:"norm-eps" help:"RMSNorm epsilon."`
}

// TrainCmd is `step-gpu train`.
type TrainCmd struct {
	Preset      string  `help:"Run preset: tiny (about a minute on a CPU adapter), small (a few minutes), laptop (an integrated GPU)." default:"tiny"`
	Data        string  `help:"Corpus: files, directories, globs (comma-separated); .jsonl (text field) and .parquet (text column) too. Default: the Go standard library source." placeholder:"SPEC"`
	RunDir      string  `name:"run-dir" help:"Folder for the tokenizer, token cache, checkpoints and metrics.jsonl (default runs/PRESET)."`
	ByteTokens  bool    `name:"byte-tokens" help:"Use plain bytes (256 + end-of-document) instead of a trained BPE."`
	Steps       int     `help:"Optimizer steps."`
	Tokens      int64   `help:"Train for this many tokens instead of --steps."`
	TotalBatch  int     `name:"total-batch" help:"Tokens per optimizer step (a multiple of batch*seq-len; the rest is gradient accumulation)."`
	LR          float64 `help:"Peak learning rate."`
	MinLR       float64 `name:"min-lr" help:"Final learning rate of the cosine decay (default LR/10)."`
	Warmup      int     `help:"Warmup steps."`
	EvalEvery   int     `name:"eval-every" help:"Validate every N steps."`
	EvalBatches int     `name:"eval-batches" help:"Validation batches per evaluation."`
	LogEvery    int     `name:"log-every" help:"Log (and read back the loss) every N steps."`
	SaveEvery   int     `name:"save-every" help:"Checkpoint every N steps."`
	Keep        int     `help:"Checkpoints to keep (0 = all)."`
	SampleEvery int     `name:"sample-every" help:"Print a sample every N steps."`
	Seed        uint64  `help:"Seed for initialisation and shuffling." default:"1"`
	Shuffle     bool    `help:"Visit training windows in a seeded random order (--no-shuffle reads the corpus in order)." default:"true" negatable:""`
	Resume      bool    `help:"Continue the run in --run-dir from its latest checkpoint."`
	Init        string  `help:"Start a new run from this checkpoint's weights (e.g. made by step-gpu import) instead of random ones, with fresh optimizer state; the model's shape and tokenizer come from the checkpoint." placeholder:"CKPT"`
	Profile     bool    `help:"Time every kernel of one training step, print the table and exit (no checkpoint)."`
	ModelFlags  `embed:""`
	StepFlags   `embed:"" group:"STEP and memory"`
}

func (c *TrainCmd) options() (step.Options, error) {
	o, err := step.Preset(c.Preset)
	if err != nil {
		return o, err
	}
	m := &o.Model
	setInt(&m.C, c.DModel)
	setInt(&m.L, c.Layers)
	setInt(&m.NH, c.Heads)
	setInt(&m.H, c.DFF)
	setInt(&m.T, c.SeqLen)
	setInt(&m.B, c.Batch)
	setInt(&m.V, c.Vocab)
	if c.RoPE != 0 {
		m.RoPE = c.RoPE
	}
	if c.NormEps != 0 {
		m.NormEps = c.NormEps
	}
	o.Data, o.RunDir, o.ByteTokens, o.Seed, o.Shuffle = c.Data, c.RunDir, c.ByteTokens, c.Seed, c.Shuffle
	if o.RunDir == "" {
		o.RunDir = "runs/" + c.Preset
	}
	setInt(&o.Steps, c.Steps)
	if c.Tokens > 0 {
		o.Tokens = c.Tokens
	}
	setInt(&o.TotalBatch, c.TotalBatch)
	setFloat(&o.LR, c.LR)
	setFloat(&o.MinLR, c.MinLR)
	setInt(&o.Warmup, c.Warmup)
	setInt(&o.EvalEvery, c.EvalEvery)
	setInt(&o.EvalBatches, c.EvalBatches)
	setInt(&o.LogEvery, c.LogEvery)
	setInt(&o.SaveEvery, c.SaveEvery)
	setInt(&o.Keep, c.Keep)
	setInt(&o.SampleEvery, c.SampleEvery)
	for _, v := range []struct {
		name string
		x    int
	}{{"--steps", c.Steps}, {"--total-batch", c.TotalBatch}, {"--warmup", c.Warmup}, {"--keep", c.Keep},
		{"--d-model", c.DModel}, {"--layers", c.Layers}, {"--heads", c.Heads}, {"--d-ff", c.DFF},
		{"--seq-len", c.SeqLen}, {"--batch", c.Batch}, {"--vocab", c.Vocab}} {
		if v.x < 0 {
			return o, fmt.Errorf("%s must not be negative, got %d", v.name, v.x)
		}
	}
	if c.LR < 0 || math.IsNaN(c.LR) {
		return o, fmt.Errorf("--lr must be positive, got %g", c.LR)
	}
	o = o.Defaults()
	if o.ByteTokens {
		o.Model.V = 257
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	return o, c.StepFlags.apply(&o)
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func setFloat(dst *float64, v float64) {
	if v != 0 {
		*dst = v
	}
}

// Run trains.
func (c *TrainCmd) Run(e *Env) error {
	o, err := c.options()
	if err != nil {
		return err
	}
	loseAt, err := faultStep()
	if err != nil {
		return err
	}
	if !c.Resume && !c.Profile {
		if latest, err := step.LatestCheckpoint(o.RunDir); err == nil {
			return fmt.Errorf("%s already holds a run (latest checkpoint %s): pass --resume to continue it, or choose another --run-dir", o.RunDir, latest)
		}
	}
	var initFrom *step.Loaded
	if c.Init != "" {
		if c.Resume {
			return fmt.Errorf("--init starts a new run and --resume continues one: give one of them")
		}
		if initFrom, err = step.OpenCheckpoint(c.Init); err != nil {
			return err
		}
		defer initFrom.R.Close()
		if err := step.AdoptInit(&o, initFrom); err != nil {
			return err
		}
	}
	var loaded *step.Loaded
	if c.Resume {
		path, err := step.LatestCheckpoint(o.RunDir)
		if err != nil {
			return err
		}
		if loaded, err = step.OpenCheckpoint(path); err != nil {
			return resumeHint(o.RunDir, path, err)
		}
		defer loaded.R.Close()
		step.ResumeInit(&o, loaded)
		if err := step.SameModel(loaded.Final(), withVocab(o, loaded.Config.V).Model); err != nil {
			return fmt.Errorf("resume from %s: %w", path, err)
		}
	}
	// The order fails fast: broken data before the device opens, a model
	// the device cannot hold before any tokenization.
	corpus, split, err := step.OpenCorpus(o.Data, e.Stderr)
	if err != nil {
		return err
	}
	d, err := e.open()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := step.CheckFits(d, o); err != nil {
		return err
	}
	progress := tokenProgress(e)
	data, err := step.PrepareCorpus(corpus, split, o.RunDir, o.Model.V, o.ByteTokens, o.Model.B, o.Model.T, o.Shuffle, o.Seed,
		e.Stderr, progress)
	if err != nil {
		return err
	}
	defer data.Close()
	t, err := step.NewTrainer(d, o, data, e.Stdout)
	if err != nil {
		return err
	}
	defer t.Release()
	t.LoseDeviceAfter = loseAt
	if initFrom != nil {
		if err := t.InitFrom(initFrom); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "initialised from %s\n", initFrom.R.Path())
	}
	if loaded != nil {
		if err := t.Resume(loaded); err != nil {
			return resumeHint(o.RunDir, loaded.R.Path(), err)
		}
		fmt.Fprintf(e.Stdout, "resumed %s at step %d\n", loaded.R.Path(), t.Step)
	}
	if c.Profile {
		p, plain, err := t.ProfileStep()
		if err != nil {
			return err
		}
		step.PrintProfile(e.Stdout, p, plain)
		return nil
	}
	if t.Metrics, err = step.OpenMetrics(o.RunDir + "/metrics.jsonl"); err != nil {
		return err
	}
	defer t.Metrics.Close()
	if t.PeakFLOPS, err = step.MeasurePeak(d, t.Opt.Model); err != nil {
		return err
	}
	mc := t.Opt.Model
	fmt.Fprintf(e.Stdout, "model: %.2fM parameters (V %d, C %d, L %d, NH %d, H %d, T %d), batch %d x %d, %d steps of %d tokens\n",
		float64(mc.Params())/1e6, mc.V, mc.C, mc.L, mc.NH, mc.H, mc.T, mc.B, o.Accum(), o.Steps, o.TotalBatch)
	fmt.Fprintf(e.Stdout, "memory: %s\n", d.Ledger)
	fmt.Fprintf(e.Stdout, "peak: matmul %.1f GFLOP/s on %s\n", t.PeakFLOPS/1e9, d.Info.Name)
	if s := shaders.MatmulReport(d); s != "" {
		fmt.Fprintln(e.Stdout, s)
	}
	start := time.Now()
	val, err := t.Run()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "done: %d steps, %d tokens in %s | val loss %.4f | val ppl %.2f | peak GPU memory %.1f MiB\n",
		t.Step, t.Tokens, time.Since(start).Round(time.Second), val, math.Exp(val), float64(d.Ledger.TotalPeak())/(1<<20))
	latest, _ := step.LatestCheckpoint(o.RunDir)
	fmt.Fprintf(e.Stdout, "model saved: %s\n", latest)
	return nil
}

// resumeHint adds to a failure to resume from the latest checkpoint which
// older checkpoint of the run is intact and how to resume from it, when the
// latest one is damaged.
func resumeHint(runDir, latest string, err error) error {
	intact, n, ierr := step.LastIntactCheckpoint(runDir)
	if ierr != nil || intact == latest {
		return err
	}
	latestFile := filepath.Join(filepath.Dir(latest), "LATEST")
	return fmt.Errorf("%w; the newest intact checkpoint is %s (step %d): to resume from it, write its name into %s "+
		"(echo %s > %s) and run again", err, intact, n, latestFile, filepath.Base(intact), latestFile)
}

// faultEnv names the test hook that marks the device lost after a given
// step (docs/PLATFORM.md).
const faultEnv = "STEP_GPU_FAULT_LOSE_DEVICE_AT"

// faultStep reads the fault-injection hook: the step after which the device
// is lost, or 0 when the variable is unset.
func faultStep() (int, error) {
	v := os.Getenv(faultEnv)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a step number, 1 or more", faultEnv, v)
	}
	return n, nil
}

func withVocab(o step.Options, v int) step.Options {
	o.Model.V = v
	return o
}

// tokenProgress draws a progress bar for tokenization on a terminal, and
// nothing otherwise.
func tokenProgress(e *Env) func(done, total int64) {
	f, ok := e.Stderr.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	last := time.Time{}
	return func(done, total int64) {
		if time.Since(last) < 100*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		pct := float64(done) / float64(max(1, total))
		n := int(30 * pct)
		fmt.Fprintf(f, "\rtokenizing [%-30s] %3.0f%% of %.1f MB", strings.Repeat("#", n), 100*pct, float64(total)/1e6)
		if done >= total {
			fmt.Fprintln(f)
		}
	}
}
