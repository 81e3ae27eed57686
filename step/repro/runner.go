package repro

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/step"
)

// Config is a reproduction: the base training options shared by every
// method, the output folder and the methods to compare.
type Config struct {
	// Base holds the model, data, tokens (or steps), batch, learning rate,
	// evaluation and seed of every method; its RunDir is ignored.
	Base step.Options
	// Out holds the shared tokenizer and token cache, one run folder per
	// method, and the results and plots.
	Out string
	// Stages are the STEP stage counts to compare with vanilla.
	Stages []int
	// Ablations name the STEP variants to run (Ablations, or "all"), each
	// with AblationStages stages.
	Ablations      []string
	AblationStages int
	// Overwrite replaces method run folders that already hold a run.
	Overwrite bool
	// Log receives the progress and every run's log lines (each run's are
	// also written to train.log in its folder).
	Log io.Writer
	// Progress draws the tokenization progress (nil for none).
	Progress func(done, total int64)
}

// Evals is the number of evaluations a run makes by default, so that each
// validation curve has about this many points (plus one at each growth).
const Evals = 10

// Prepare fills the base options' defaults for a reproduction: evaluation
// every Steps/Evals steps, a log line every half of that, and a checkpoint
// only at the end of each stage and of the run. It returns the completed
// options and the methods.
func (c Config) Prepare() (step.Options, []Method, error) {
	methods, err := Methods(c.Stages, c.Ablations, c.AblationStages)
	if err != nil {
		return step.Options{}, nil, err
	}
	if c.Out == "" {
		return step.Options{}, nil, errors.New("no output folder")
	}
	b := c.Base
	b.RunDir = c.Out
	b.Stages = nil
	steps := b.Defaults().Steps
	if b.EvalEvery == 0 {
		b.EvalEvery = max(1, steps/Evals)
	}
	if b.LogEvery == 0 {
		b.LogEvery = max(1, b.EvalEvery/2)
	}
	b.SaveEvery, b.Keep = steps, 1
	b = b.Defaults()
	if err := b.Validate(); err != nil {
		return step.Options{}, nil, err
	}
	// Every method's options are checked before anything is trained, so
	// that a bad flag never costs a finished run.
	for _, m := range methods {
		if _, err := m.Options(b, filepath.Join(c.Out, m.Name)); err != nil {
			return step.Options{}, nil, err
		}
	}
	return b, methods, nil
}

// Run trains every method on the device in turn and returns the results,
// which it also writes (results.json, results.md and the plots in Out)
// after each method, so that an interrupted reproduction keeps what it
// finished.
func Run(d *gpu.Device, c Config) (*Results, error) {
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	base, methods, err := c.Prepare()
	if err != nil {
		return nil, err
	}
	for _, m := range methods {
		dir := filepath.Join(c.Out, m.Name)
		if _, err := os.Stat(dir); err == nil {
			if !c.Overwrite {
				return nil, fmt.Errorf("%s already exists: choose another output folder or pass --overwrite to replace the runs", dir)
			}
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("overwrite %s: %w", dir, err)
			}
		}
	}
	// The first preparation trains the tokenizer and fills the token cache
	// in Out; every method reuses both.
	data, err := step.PrepareData(base.Data, c.Out, base.Model.V, base.ByteTokens, base.Model.B, base.Model.T,
		base.Shuffle, base.Seed, log, c.Progress)
	if err != nil {
		return nil, err
	}
	res := &Results{Device: d.Info.Name, Data: data.Description, EvalBatches: base.EvalBatches,
		TotalBatch: base.TotalBatch, Steps: base.Steps, Seed: base.Seed}
	peak, err := step.MeasurePeak(d, base.Model)
	if err != nil {
		data.Close()
		return nil, err
	}
	for i, m := range methods {
		if i > 0 {
			if data, err = step.PrepareData(base.Data, c.Out, base.Model.V, base.ByteTokens, base.Model.B, base.Model.T,
				base.Shuffle, base.Seed, io.Discard, nil); err != nil {
				return res, err
			}
		}
		r, cfg, err := runMethod(d, m, base, data, c.Out, peak, log)
		data.Close()
		if err != nil {
			return res, fmt.Errorf("%s: %w", m.Name, err)
		}
		res.Model = cfg
		res.Methods = append(res.Methods, r)
		res.summarise()
		if err := res.Write(c.Out); err != nil {
			return res, err
		}
	}
	return res, nil
}

// runMethod trains one method in its own folder and returns its result
// and the final model config (with the tokenizer's vocabulary).
func runMethod(d *gpu.Device, m Method, base step.Options, data *step.Data, out string, peak float64,
	console io.Writer) (Result, nn.Config, error) {
	dir := filepath.Join(out, m.Name)
	o, err := m.Options(base, dir)
	if err != nil {
		return Result{}, nn.Config{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, nn.Config{}, fmt.Errorf("run folder: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "train.log"))
	if err != nil {
		return Result{}, nn.Config{}, fmt.Errorf("run log: %w", err)
	}
	defer logFile.Close()
	log := io.MultiWriter(console, logFile)
	fmt.Fprintf(log, "== %s: %s; %d steps of %d tokens\n", m.Label, m.Describe(o), o.Steps, o.TotalBatch)
	t, err := step.NewTrainer(d, o, data, log)
	if err != nil {
		return Result{}, nn.Config{}, err
	}
	defer t.Release()
	t.PeakFLOPS = peak
	metricsPath := filepath.Join(dir, "metrics.jsonl")
	if t.Metrics, err = step.OpenMetrics(metricsPath); err != nil {
		return Result{}, nn.Config{}, err
	}
	start := time.Now()
	val, err := t.Run()
	wall := time.Since(start)
	if cerr := t.Metrics.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Result{}, nn.Config{}, err
	}
	curve, err := ReadCurve(metricsPath)
	if err != nil {
		return Result{}, nn.Config{}, err
	}
	r := Result{Method: m, RunDir: dir, Steps: t.Step, Tokens: t.Tokens, ValLoss: val, ValPPL: math.Exp(val),
		WallSeconds: wall.Seconds(), TokPerS: float64(t.Tokens) / wall.Seconds(), Memory: t.Memory, Curve: curve}
	for _, s := range t.Opt.Stages {
		r.Split = append(r.Split, s.Added)
	}
	for _, g := range t.History {
		r.Growth = append(r.Growth, int64(g.Step)*int64(o.TotalBatch))
	}
	r.maxima()
	fmt.Fprintf(log, "== %s: val loss %.4f (ppl %.2f), %d tokens in %s (%.0f tok/s); max memory: paper %s, plan %s, measured %s, model states %s\n",
		m.Label, r.ValLoss, r.ValPPL, r.Tokens, wall.Round(time.Second), r.TokPerS, mib(uint64(r.PaperMax)), mib(r.PlanMax),
		mib(r.MeasuredMax), mib(r.StatesMax))
	return r, t.Opt.Model, nil
}
