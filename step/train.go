package step

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// ErrNonFinite is returned when the loss or gradient norm becomes NaN or
// infinite; the run stops and its last good checkpoint is kept.
var ErrNonFinite = errors.New("non-finite loss or gradient norm")

// Trainer runs vanilla pre-training of one model on one device.
type Trainer struct {
	Opt   Options
	D     *gpu.Device
	Model *nn.Model
	Data  *Data
	// Step is the number of optimizer steps done; Tokens the tokens seen.
	Step   int
	Tokens int64
	// Stage is the 1-based STEP stage (1 for vanilla runs), StageStep the
	// steps done in it, and History the growth events so far.
	Stage     int
	StageStep int
	History   []checkpoints.Growth
	// Memory holds each finished stage's memory report (reportMemory).
	Memory []StageMemory
	// LoseDeviceAfter, when positive, marks the device lost
	// (gpu.Device.InjectLoss) right after that optimizer step, as a driver
	// reset would: a fault-injection hook for tests, which `step-gpu train`
	// sets from STEP_GPU_FAULT_LOSE_DEVICE_AT (docs/PLATFORM.md).
	LoseDeviceAfter int
	// PeakFLOPS is the device's measured matmul throughput, the base of
	// the "% of peak" figure.
	PeakFLOPS float64
	// Log receives the log lines; Metrics, if set, one JSON object per
	// logged step.
	Log     io.Writer
	Metrics *MetricsWriter
	// LastVal is the last validation loss (NaN before the first eval).
	LastVal float64

	batch   []uint32
	tokens  []uint32
	targets []uint32
}

// NewTrainer allocates the model (initialised from the seed) for prepared
// data; the model's vocabulary is the tokenizer's.
func NewTrainer(d *gpu.Device, o Options, data *Data, log io.Writer) (*Trainer, error) {
	o.Model.V = data.Tok.VocabSize()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg := o.Model
	if o.Staged() {
		cfg = o.StageConfig(1)
		fmt.Fprintln(log, o.StageSummary())
	}
	m, err := nn.NewStagedModel(d, cfg, nn.Layout{Recompute: o.Recompute}, o.Seed)
	if err != nil {
		return nil, fmt.Errorf("allocate model: %w", err)
	}
	n := o.Model.B * o.Model.T
	return &Trainer{Opt: o, D: d, Model: m, Data: data, Log: log, LastVal: math.NaN(), Stage: 1,
		tokens: make([]uint32, n), targets: make([]uint32, n)}, nil
}

// Stages returns the run's stage count (1 for vanilla).
func (t *Trainer) Stages() int { return max(1, len(t.Opt.Stages)) }

// schedule returns the learning-rate schedule of the current stage (the
// run's own for vanilla training); steps count from the stage's start.
func (t *Trainer) schedule() Schedule {
	if !t.Opt.Staged() {
		return t.Opt.Schedule()
	}
	return t.Opt.Stages[t.Stage-1].Schedule()
}

// stageRun returns the steps the current stage trains before it ends (a
// growth, or the end of the run).
func (t *Trainer) stageRun() int {
	if !t.Opt.Staged() {
		return t.Opt.Steps
	}
	return t.Opt.Stages[t.Stage-1].Run(t.Stage == len(t.Opt.Stages))
}

// Release frees the model.
func (t *Trainer) Release() { t.Model.Release() }

// StepFLOPs estimates the floating-point work of one optimizer step: 6 per
// matrix parameter per token (forward and backward of every linear map,
// head included; the embedding is a lookup), plus causal attention's two
// T x T products per layer (forward 2*T*C per token on the causal half,
// backward twice that).
func StepFLOPs(c nn.Config, tokens int) float64 {
	matrix := float64(c.L*(4*c.C*c.C+3*c.C*c.H) + c.V*c.C)
	attn := float64(c.L) * 6 * float64(c.T) * float64(c.C)
	return float64(tokens) * (6*matrix + attn)
}

// nextBatch fills tokens and targets with the next (B, T) inputs and their
// shifted targets.
func (t *Trainer) nextBatch() error {
	c := t.Opt.Model
	var err error
	t.batch, err = t.Data.Train.Next(t.batch[:0])
	if err != nil {
		return err
	}
	splitWindows(t.batch, t.tokens, t.targets, c.B, c.T)
	return nil
}

// splitWindows turns (B, T+1) windows into inputs (B, T) and targets (B, T).
func splitWindows(batch, tokens, targets []uint32, B, T int) {
	for b := range B {
		row := batch[b*(T+1) : (b+1)*(T+1)]
		copy(tokens[b*T:(b+1)*T], row[:T])
		copy(targets[b*T:(b+1)*T], row[1:])
	}
}

// StepResult is what one optimizer step reports.
type StepResult struct {
	Loss, Norm, LR float64
	Elapsed        time.Duration
	Read           bool // loss and norm were read back (log steps only)
}

// TrainStep runs one optimizer step: Accum micro-batches of forward and
// backward with gradients accumulated, then clipping and AdamW. The loss
// and gradient norm are read back only when read is set.
func (t *Trainer) TrainStep(read bool) (StepResult, error) {
	start := time.Now()
	o := t.Opt
	m := t.Model
	accum := o.Accum()
	scale := float32(1 / float64(accum*o.Model.B*o.Model.T))
	r := t.D.NewRecorder()
	if err := m.ZeroGrads(r); err != nil {
		return StepResult{}, err
	}
	if err := m.ClearLossAcc(r); err != nil {
		return StepResult{}, err
	}
	for range accum {
		if err := t.nextBatch(); err != nil {
			return StepResult{}, err
		}
		if err := m.SetBatch(r, t.tokens, t.targets); err != nil {
			return StepResult{}, err
		}
		for _, f := range []func() error{
			func() error { return m.Forward(r) },
			func() error { return m.Head(r, true, scale) },
			func() error { return m.AddLoss(r, scale) },
			func() error { return m.Backward(r) },
		} {
			if err := f(); err != nil {
				return StepResult{}, err
			}
		}
	}
	// Each stage starts fresh AdamW state, so its bias correction counts
	// from the stage's first step.
	lr := t.schedule().LR(t.StageStep + 1)
	if err := m.OptimizerStep(r, shaders.AdamWDefaults(float32(lr)), t.StageStep+1); err != nil {
		return StepResult{}, err
	}
	if err := r.Flush(); err != nil {
		return StepResult{}, err
	}
	t.Step++
	t.StageStep++
	t.Tokens += int64(o.TotalBatch)
	res := StepResult{LR: lr, Read: read}
	if read {
		loss, err := m.ReadLossAcc()
		if err != nil {
			return res, err
		}
		norm, err := m.ReadGradNorm()
		if err != nil {
			return res, err
		}
		res.Loss, res.Norm = float64(loss), float64(norm)
		if !finite(res.Loss) || !finite(res.Norm) {
			return res, fmt.Errorf("step %d: loss %v, gradient norm %v: %w", t.Step, res.Loss, res.Norm, ErrNonFinite)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Evaluate returns the mean validation loss over the first n batches of the
// validation split (all of them when n is 0 or larger than the split).
func (t *Trainer) Evaluate(n int) (float64, error) {
	o := t.Opt
	val := t.Data.Val
	batches := int(val.Batches())
	if n > 0 && n < batches {
		batches = n
	}
	val.Reset()
	m := t.Model
	scale := float32(1 / float64(batches*o.Model.B*o.Model.T))
	r := t.D.NewRecorder()
	if err := m.ClearLossAcc(r); err != nil {
		return 0, err
	}
	var buf []uint32
	for range batches {
		var err error
		if buf, err = val.Next(buf[:0]); err != nil {
			return 0, err
		}
		splitWindows(buf, t.tokens, t.targets, o.Model.B, o.Model.T)
		if err := m.SetBatch(r, t.tokens, t.targets); err != nil {
			return 0, err
		}
		if err := m.Forward(r); err != nil {
			return 0, err
		}
		if err := m.Head(r, false, 0); err != nil {
			return 0, err
		}
		if err := m.AddLoss(r, scale); err != nil {
			return 0, err
		}
	}
	if err := r.Flush(); err != nil {
		return 0, err
	}
	loss, err := m.ReadLossAcc()
	if err != nil {
		return 0, err
	}
	if !finite(float64(loss)) {
		return float64(loss), fmt.Errorf("validation loss %v: %w", loss, ErrNonFinite)
	}
	t.LastVal = float64(loss)
	return float64(loss), nil
}
