package step

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
)

// ErrDeviceLost is wrapped by the error Run returns when the device was lost
// (a driver reset, a removed GPU, or the fault-injection hook).
var ErrDeviceLost = errors.New("device lost")

// deviceLostError is the error Run returns after a device loss; it matches
// ErrDeviceLost with errors.Is.
type deviceLostError struct{ msg string }

func (e *deviceLostError) Error() string        { return e.msg }
func (e *deviceLostError) Is(target error) bool { return target == ErrDeviceLost }

// lostError explains a lost device: at which step, why, what failed, and
// where the run can resume from.
func (t *Trainer) lostError(cause error) error {
	resume := "no checkpoint was written before the loss: start the run again"
	if path, step, err := LastIntactCheckpoint(t.Opt.RunDir); err == nil {
		resume = fmt.Sprintf("the last intact checkpoint is %s (step %d): run the same `step-gpu train` command with --resume "+
			"(--run-dir %s) to continue from it", path, step, t.Opt.RunDir)
	}
	lost := t.D.Lost()
	what := strings.TrimSuffix(firstLine(cause), ": "+lost.Error())
	return &deviceLostError{fmt.Sprintf("training stopped at step %d: %v (while: %s); %s", t.Step, lost, what, resume)}
}

// firstLine returns the error's text up to its first newline.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// LastIntactCheckpoint returns the newest checkpoint of a run whose every
// checksum verifies, with its step: the one LATEST names when it is intact,
// otherwise the highest-step intact file in the checkpoint folder.
func LastIntactCheckpoint(runDir string) (string, int, error) {
	verify := func(path string) (int, error) {
		r, err := checkpoints.Open(path)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		return r.Header.Step, r.Verify()
	}
	latest, err := LatestCheckpoint(runDir)
	if err != nil {
		return "", 0, err
	}
	if step, err := verify(latest); err == nil {
		return latest, step, nil
	}
	paths, err := filepath.Glob(filepath.Join(CheckpointDir(runDir), "*.ckpt"))
	if err != nil {
		return "", 0, err
	}
	best, bestStep := "", -1
	for _, p := range paths {
		if step, err := verify(p); err == nil && step > bestStep {
			best, bestStep = p, step
		}
	}
	if best == "" {
		return "", 0, fmt.Errorf("no intact checkpoint in %s", CheckpointDir(runDir))
	}
	return best, bestStep, nil
}

// CheckFits checks, before anything is allocated, that every buffer of the
// run fits one storage binding of device d (the smaller of its
// maxStorageBufferBindingSize and maxBufferSize: kernels bind buffers
// whole) and that the largest stage's planned total (PlanStage, what the
// ledger will hold) fits the memory a CPU adapter can have (the host's RAM;
// a GPU's memory is not visible through WebGPU, so there only a total over
// MaxPlausibleBytes is refused). The error names the tensor or the stage,
// the planned total and the device limit, and says what to change.
func CheckFits(d *gpu.Device, o Options) error {
	limit, limitName := d.Limits.MaxStorageBufferBindingSize, "maxStorageBufferBindingSize"
	if d.Limits.MaxBufferSize < limit {
		limit, limitName = d.Limits.MaxBufferSize, "maxBufferSize"
	}
	stages := 1
	if o.Staged() {
		stages = len(o.Stages)
	}
	var worst uint64
	worstStage := 1
	prev := 0
	for i := 1; i <= stages; i++ {
		cfg, lo := o.Model, PlanOptions{Recompute: o.Recompute}.layout(o.Model, 0)
		if o.Staged() {
			cfg = o.StageConfig(i)
			sl := o.StageLayout(i)
			lo = PlanOptions{R: sl.R, FrozenF32: o.FrozenF32, Targets: o.LoRATargets, Recompute: o.Recompute}.layout(cfg, prev)
		}
		f, err := PlanStage(cfg, prev, PlanOptions{R: lo.R, FrozenF32: o.FrozenF32, Targets: o.LoRATargets,
			Recompute: o.Recompute, BindingLimit: limit, Sampler: o.SampleEvery > 0})
		if err != nil {
			return fmt.Errorf("model does not fit the device: %w", err)
		}
		if f.Total() > worst {
			worst, worstStage = f.Total(), i
		}
		if name, shape, bytes, param := largestBuffer(cfg, lo); bytes > limit {
			hint := "a parameter this size cannot be bound on this device whatever the stage split or batch: use a smaller " +
				"--d-model, --d-ff or --vocab"
			if !param {
				hint = "an activation scales with the batch: use a smaller --batch or --seq-len"
			}
			return fmt.Errorf("model does not fit the device: tensor %s %s is %s, over the device's %s of %s "+
				"(one buffer must fit one binding); the run's buffers total %s (the planned ledger of stage %d); %s; "+
				"`step-gpu plan` shows every stage's bytes", name, shape, humanBytes(bytes), limitName, humanBytes(limit),
				humanBytes(f.Total()), i, hint)
		}
		prev = cfg.L
	}
	memory, memoryName := uint64(MaxPlausibleBytes), "no single GPU has that much memory"
	if d.IsCPU() {
		if ram := hostRAM(); ram > 0 {
			memory, memoryName = ram, "the host's RAM, which a CPU adapter allocates from"
		}
	}
	if worst > memory {
		stage := ""
		if stages > 1 {
			stage = fmt.Sprintf(" (stage %d of %d)", worstStage, stages)
		}
		return fmt.Errorf("model does not fit the device: the run's buffers total %s%s in the planned ledger, over %s "+
			"(%s); run `step-gpu plan` to find a split that fits, then train with --step and more --stages, a smaller --batch, "+
			"or --recompute", humanBytes(worst), stage, humanBytes(memory), memoryName)
	}
	return nil
}

// MaxPlausibleBytes is the planned total above which CheckFits refuses a run
// on a GPU, whose memory WebGPU does not report: 1 TiB, several times the
// largest single GPU.
const MaxPlausibleBytes = 1 << 40

// largestBuffer returns the largest buffer a stage of cfg with layout lo
// allocates, as nn.Model does: a parameter (with its same-sized gradient
// and AdamW moments) or an activation. The logits are left out: they are
// chunked to fit a binding (shaders.CrossEntropyRowsPerChunk), and one row
// of them is the "act.logits row" entry.
func largestBuffer(cfg nn.Config, lo nn.Layout) (name, shape string, bytes uint64, param bool) {
	trained, frozen := cfg.StagedSpecs(lo)
	consider := func(n, sh string, b uint64, p bool) {
		if b > bytes {
			name, shape, bytes, param = n, sh, b, p
		}
	}
	for _, s := range trained {
		consider(s.Name, fmt.Sprint(s.Shape), 4*uint64(s.Numel()), true)
	}
	for _, s := range frozen {
		b := 4 * uint64(s.Numel())
		if len(s.Shape) == 2 {
			b = lo.Format.Bytes(s.Numel())
		}
		consider(s.Name, fmt.Sprint(s.Shape), b, true)
	}
	N := uint64(cfg.B) * uint64(cfg.T)
	consider("act.0.g", fmt.Sprintf("[%d %d]", N, cfg.H), 4*N*uint64(cfg.H), false)
	consider("act.0.x", fmt.Sprintf("[%d %d]", N, cfg.C), 4*N*uint64(cfg.C), false)
	consider("act.0.lse", fmt.Sprintf("[%d %d %d]", cfg.B, cfg.NH, cfg.T), 4*uint64(cfg.B*cfg.NH*cfg.T), false)
	consider("act.logits row", fmt.Sprintf("[1 %d]", cfg.V), 4*uint64(cfg.V), false)
	consider("input.token_offsets", fmt.Sprintf("[%d]", cfg.V+1), 4*uint64(cfg.V+1), false)
	return name, shape, bytes, param
}

// hostRAM returns the machine's memory in bytes from /proc/meminfo, or 0
// where that is not available.
func hostRAM() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb uint64
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	return 0
}

// humanBytes formats a byte count in MiB or GiB.
func humanBytes(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
