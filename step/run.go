package step

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// MeasurePeak times the matmul kernel at the shape of the model's widest
// linear layer (a few repetitions, well under a second on lavapipe) and
// returns its FLOP/s: the "peak" that a step's achieved FLOP/s is compared
// with in the log.
func MeasurePeak(d *gpu.Device, c nn.Config) (float64, error) {
	M, N, K := c.B*c.T, c.H, c.C
	a, err := d.NewBuffer("peak.a", gpu.CatScratch, uint64(4*M*K))
	if err != nil {
		return 0, err
	}
	defer a.Release()
	b, err := d.NewBuffer("peak.b", gpu.CatScratch, uint64(4*N*K))
	if err != nil {
		return 0, err
	}
	defer b.Release()
	out, err := d.NewBuffer("peak.out", gpu.CatScratch, uint64(4*M*N))
	if err != nil {
		return 0, err
	}
	defer out.Release()
	run := func(n int) (time.Duration, error) {
		r := d.NewRecorder()
		start := time.Now()
		for range n {
			if err := shaders.Matmul(r, out, a, b, M, N, K, shaders.NT, false); err != nil {
				return 0, err
			}
		}
		err := r.Flush()
		return time.Since(start), err
	}
	if _, err := run(1); err != nil { // compile and pick the path
		return 0, err
	}
	best := math.Inf(1)
	for range 3 {
		el, err := run(2)
		if err != nil {
			return 0, err
		}
		best = math.Min(best, el.Seconds()/2)
	}
	return 2 * float64(M) * float64(N) * float64(K) / best, nil
}

// isTerminal reports whether f is an interactive terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Run trains until Opt.Steps, logging every LogEvery steps, evaluating every
// EvalEvery, sampling every SampleEvery and checkpointing every SaveEvery
// and at the end. On a non-finite loss it stops without saving, so the last
// good checkpoint stays the newest. When the device is lost it stops with an
// error that wraps ErrDeviceLost and names the step, the reason and the last
// intact checkpoint; no checkpoint is written after the loss. It returns the
// final validation loss.
func (t *Trainer) Run() (float64, error) {
	val, err := t.run()
	if err != nil && t.D.Lost() != nil {
		return math.NaN(), t.lostError(err)
	}
	return val, err
}

func (t *Trainer) run() (float64, error) {
	o := t.Opt
	bar := isTerminal(os.Stderr)
	stepFLOPs := ModelStepFLOPs(t.Model, o.TotalBatch)
	// The sampler is made with each stage's model, before its first step,
	// so that the stage's memory is the same whenever it samples.
	var sampler *nn.Model
	newSampler := func() (err error) {
		if o.SampleEvery > 0 {
			sampler, err = nn.NewSampler(t.Model)
		}
		return err
	}
	if err := newSampler(); err != nil {
		return math.NaN(), err
	}
	defer func() {
		if sampler != nil {
			sampler.Release()
		}
	}()
	// The stage's high-water mark counts from here: the peak-throughput
	// probe's buffers before training are not the run's.
	t.D.Ledger.ResetPeak()
	intervalStart := time.Now()
	intervalSteps := 0
	for t.Step < o.Steps {
		stageEnd := t.StageStep+1 >= t.stageRun() && t.Stage < t.Stages()
		read := (t.Step+1)%o.LogEvery == 0 || t.Step+1 == o.Steps || t.Step == 0 || stageEnd
		res, err := t.TrainStep(read)
		if err != nil {
			if errors.Is(err, ErrNonFinite) {
				fmt.Fprintf(t.Log, "stopping: %v; the last good checkpoint is kept\n", err)
			}
			return math.NaN(), err
		}
		intervalSteps++
		if t.LoseDeviceAfter > 0 && t.Step == t.LoseDeviceAfter {
			t.D.InjectLoss(fmt.Sprintf("fault injected after step %d (STEP_GPU_FAULT_LOSE_DEVICE_AT)", t.Step))
		}
		if bar && !read {
			fmt.Fprintf(os.Stderr, "\r%s", progressBar(t.Step, o.Steps, 30))
		}
		var val *float64
		if t.Step%o.EvalEvery == 0 || t.Step == o.Steps || stageEnd {
			v, err := t.Evaluate(o.EvalBatches)
			if err != nil {
				return math.NaN(), err
			}
			val = &v
		}
		if read || val != nil {
			if !read {
				res.Loss, res.Norm = math.NaN(), math.NaN()
			}
			el := time.Since(intervalStart)
			perStep := el / time.Duration(max(1, intervalSteps))
			tps := float64(o.TotalBatch) / perStep.Seconds()
			share := 0.0
			if t.PeakFLOPS > 0 {
				share = stepFLOPs / perStep.Seconds() / t.PeakFLOPS
			}
			if bar {
				fmt.Fprint(os.Stderr, "\r\033[K")
			}
			line := fmt.Sprintf("step %d/%d | stage %d/%d | loss %.3f | norm %.2f | lr %.1e | %d ms | %s tok/s",
				t.Step, o.Steps, t.Stage, t.Stages(), res.Loss, res.Norm, res.LR, perStep.Milliseconds(), humanRate(tps))
			if share > 0 {
				line += fmt.Sprintf(" | %.0f%% of peak", 100*share)
			}
			if val != nil {
				line += fmt.Sprintf(" | val %.3f (ppl %.1f)", *val, math.Exp(*val))
			}
			fmt.Fprintln(t.Log, line)
			if t.Metrics != nil {
				led := t.D.Ledger.Snapshot()
				rec := Metric{Step: t.Step, Stage: t.Stage, Tokens: t.Tokens, Loss: res.Loss, Norm: res.Norm, LR: res.LR,
					MS: float64(perStep.Microseconds()) / 1e3, TokPerS: tps, PeakShare: share,
					LedgerBytes: led.Total, LedgerPeakBytes: led.TotalPeak, Ledger: led.Peak, ValLoss: val}
				if !read {
					rec.Loss, rec.Norm = 0, 0
				}
				if val != nil {
					ppl := math.Exp(*val)
					rec.ValPPL = &ppl
				}
				if err := t.Metrics.Write(rec); err != nil {
					return math.NaN(), err
				}
			}
			intervalStart, intervalSteps = time.Now(), 0
		}
		if o.SampleEvery > 0 && t.Step%o.SampleEvery == 0 {
			text, err := t.Sample(sampler, "package ", o.SampleTokens)
			if err != nil {
				return math.NaN(), err
			}
			fmt.Fprintf(t.Log, "sample: %q\n", text)
		}
		if t.Step%o.SaveEvery == 0 || t.Step == o.Steps || stageEnd {
			// A lost device may read back garbage: never let it become the
			// newest checkpoint.
			if err := t.D.Lost(); err != nil {
				return math.NaN(), err
			}
			path, err := t.Save()
			if err != nil {
				return math.NaN(), err
			}
			fmt.Fprintf(t.Log, "saved %s\n", path)
		}
		if stageEnd || t.Step == o.Steps {
			t.reportMemory()
		}
		if stageEnd {
			if sampler != nil { // it shares the old model's weights
				sampler.Release()
				sampler = nil
			}
			if err := t.Grow(); err != nil {
				return math.NaN(), err
			}
			if err := newSampler(); err != nil {
				return math.NaN(), err
			}
			stepFLOPs = ModelStepFLOPs(t.Model, o.TotalBatch)
			intervalStart, intervalSteps = time.Now(), 0
		}
	}
	if math.IsNaN(t.LastVal) {
		return t.Evaluate(o.EvalBatches)
	}
	return t.LastVal, nil
}

// Sample generates n tokens after prompt with the sampler model (batch 1,
// sharing the trained model's weights: nn.NewSampler) and returns the
// decoded text.
func (t *Trainer) Sample(sampler *nn.Model, prompt string, n int) (string, error) {
	ids := t.Data.Tok.Encode(nil, []byte(prompt))
	if len(ids) == 0 {
		ids = []uint32{t.Data.Tok.EOT()}
	}
	out, err := sampler.Generate(ids, n, nn.SampleOptions{Temperature: 0.8, TopK: 40, Stop: -1}, rand.New(rand.NewPCG(t.Opt.Seed, uint64(t.Step))))
	if err != nil {
		return "", err
	}
	text, err := t.Data.Tok.Decode(nil, out)
	return string(text), err
}

func progressBar(done, total, width int) string {
	n := width * done / max(1, total)
	return fmt.Sprintf("[%s%s] step %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
}

// humanRate formats a rate like 38.2k.
func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
