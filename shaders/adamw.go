package shaders

import (
	"fmt"
	"math"

	"github.com/step-gpu/step-gpu/gpu"
)

const (
	// adamwWG is the workgroup size of the AdamW kernel.
	adamwWG = 256
	// adamwVPI is the number of vec4s each invocation updates, strided by
	// the workgroup size. 1, 2, 4 and 8 measured within noise of each other
	// on lavapipe (~110 CPU-ms per 16M-parameter step); 4 spreads the reads
	// of hyper and clip over more elements.
	adamwVPI = 4
	// AdamWHyperFloats is the length of the hyper buffer AdamWHyper fills.
	AdamWHyperFloats = 8
)

var (
	adamwSrc = own("adamw")
	kAdamW   = kernel("adamw", "update",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead},
		map[string]string{"WG": fmt.Sprint(adamwWG), "VPI": fmt.Sprint(adamwVPI)})
)

// AdamWConfig holds the AdamW hyperparameters. STEP.md fixes Beta1 0.9,
// Beta2 0.95, Eps 1e-8 and WeightDecay 0.1 (applied to matrices only); LR
// follows the schedule and may change every step.
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
}

// AdamWDefaults returns STEP.md's AdamW settings with the learning rate lr.
func AdamWDefaults(lr float32) AdamWConfig {
	return AdamWConfig{LR: lr, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
}

// Validate returns an error naming the first hyperparameter out of range.
func (c AdamWConfig) Validate() error {
	switch {
	case !(c.LR >= 0) || math.IsInf(float64(c.LR), 0):
		return fmt.Errorf("adamw: learning rate %v must be finite and non-negative", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("adamw: beta1 %v outside [0, 1)", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("adamw: beta2 %v outside [0, 1)", c.Beta2)
	case !(c.Eps > 0) || math.IsInf(float64(c.Eps), 0):
		return fmt.Errorf("adamw: eps %v must be finite and positive", c.Eps)
	case !(c.WeightDecay >= 0) || math.IsInf(float64(c.WeightDecay), 0):
		return fmt.Errorf("adamw: weight decay %v must be finite and non-negative", c.WeightDecay)
	}
	return nil
}

// AdamWHyper returns the contents of the hyper buffer (AdamWHyperFloats)
// for the 1-based step t: lr, beta1, beta2, eps, weight decay and the bias
// corrections 1/(1-beta1^t), 1/(1-beta2^t), computed in float64. The host
// writes it once per step, after the previous step's AdamW dispatches were
// submitted (a queue write lands before the next submission, so writing it
// earlier would change a step still being recorded). A step t < 1 is a
// programmer error and panics.
func AdamWHyper(cfg AdamWConfig, t int) []float32 {
	if t < 1 {
		panic(fmt.Sprintf("shaders.AdamWHyper: step %d, steps count from 1", t))
	}
	ibc1 := 1 / (1 - math.Pow(float64(cfg.Beta1), float64(t)))
	ibc2 := 1 / (1 - math.Pow(float64(cfg.Beta2), float64(t)))
	return []float32{cfg.LR, cfg.Beta1, cfg.Beta2, cfg.Eps, cfg.WeightDecay, float32(ibc1), float32(ibc2), 0}
}

// AdamW records one AdamW step over a parameter tensor in place: param (n)
// and its moments m (n), v (n) are updated from grad (n) multiplied by the
// clip scale clip[1], with the step's values read from hyper
// (AdamWHyperFloats, see AdamWHyper) and clip (GradNormClipFloats, see
// GradNormFinalize; a buffer holding 0, 1 turns clipping off). decay turns
// on the decoupled weight decay (matrices). When clip[0], the global norm,
// is NaN or infinite the kernel writes nothing: the step is skipped.
// Tensors larger than the device's storage binding limit are updated in
// chunks.
func AdamW(r *gpu.Recorder, param, grad, m, v, hyper, clip *gpu.Buffer, n int, decay bool) error {
	d := r.Device()
	if n < 0 {
		return fmt.Errorf("adamw %s: negative size %d", param.Name, n)
	}
	for _, b := range []*gpu.Buffer{param, grad, m, v} {
		if uint64(4*n) > b.Size {
			return fmt.Errorf("adamw %s: %s holds %d bytes, %d elements need %d", param.Name, b.Name, b.Size, n, 4*n)
		}
	}
	if hyper.Size < 4*AdamWHyperFloats || clip.Size < 4*GradNormClipFloats {
		return fmt.Errorf("adamw %s: hyper %s (%d bytes) or clip %s (%d bytes) too small",
			param.Name, hyper.Name, hyper.Size, clip.Name, clip.Size)
	}
	p, err := d.Pipeline(kAdamW)
	if err != nil {
		return err
	}
	flag := uint32(0)
	if decay {
		flag = 1
	}
	chunk := adamwChunk(d)
	for off := 0; off < n; off += chunk {
		c := min(chunk, n-off)
		grid := adamwGrid(d, (c+4*adamwWG*adamwVPI-1)/(4*adamwWG*adamwVPI))
		o, size := uint64(4*off), adamwBindBytes(c)
		err := r.Dispatch(p, grid, float64(16*c), gpu.Params(uint32(c), grid.X, flag, uint32(0)),
			param.Range(o, size), grad.Range(o, size), m.Range(o, size), v.Range(o, size),
			hyper.Range(0, 4*AdamWHyperFloats), clip.Range(0, 16))
		if err != nil {
			return fmt.Errorf("adamw %s: %w", param.Name, err)
		}
	}
	return nil
}

// adamwChunkOverride, when positive, replaces the binding-limit chunk of
// adamwChunk (tests use it to cross chunk boundaries with small tensors).
// It must be a multiple of GradNormChunk.
var adamwChunkOverride int

// adamwGroupsOverride, when positive, replaces the device's workgroups per
// dimension in adamwGrid (tests use it to fold small grids).
var adamwGroupsOverride uint32

// adamwChunk returns the elements the optimizer kernels (AdamW and
// GradNormSquares) bind at once: the largest multiple of GradNormChunk
// within the device's maxStorageBufferBindingSize. Chunk offsets are then
// multiples of 32 KiB, so they satisfy any storage offset alignment, and a
// chunk covers whole partials slots.
func adamwChunk(d *gpu.Device) int {
	if adamwChunkOverride > 0 {
		if adamwChunkOverride%GradNormChunk != 0 {
			panic("shaders: adamwChunkOverride must be a multiple of GradNormChunk")
		}
		return adamwChunkOverride
	}
	return int(d.Limits.MaxStorageBufferBindingSize/4) / GradNormChunk * GradNormChunk
}

// adamwGrid folds a count of workgroups into a grid the device accepts.
func adamwGrid(d *gpu.Device, groups int) gpu.Grid {
	limit := d.Limits.MaxComputeWorkgroupsPerDimension
	if adamwGroupsOverride > 0 {
		limit = adamwGroupsOverride
	}
	return gpu.FoldGrid(uint32(max(groups, 1)), limit)
}

// adamwBindBytes is the byte size bound for n elements: whole vec4s, which
// every buffer holds because sizes are padded to gpu.Align.
func adamwBindBytes(n int) uint64 { return uint64((4*n + gpu.Align - 1) / gpu.Align * gpu.Align) }
