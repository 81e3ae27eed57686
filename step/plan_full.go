package step

import (
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

// DefaultBindingLimit is the storage binding size, in bytes, that a plan
// assumes when PlanOptions leaves it zero: WebGPU's default and lavapipe's
// maxStorageBufferBindingSize, 128 MiB.
const DefaultBindingLimit = 128 << 20

// PlanOptions are the settings of a full memory plan.
type PlanOptions struct {
	// R is the LoRA rank of the adapters on frozen layers; 0 means none.
	R int
	// BindingLimit is the largest storage binding in bytes, the smaller of
	// the device's maxStorageBufferBindingSize and maxBufferSize: it sets
	// the rows of the logits chunk. 0 means DefaultBindingLimit.
	BindingLimit uint64
	// FrozenF32 keeps frozen weights in float32 instead of half precision
	// packed two per u32.
	FrozenF32 bool
	// Sampler adds the batch-1 sampling model a run that prints samples
	// allocates (nn.NewSampler: its own activations, shared weights).
	Sampler bool
	// Targets names the adapted linear maps of a frozen block
	// (nn.LinearNames); empty means all seven.
	Targets []string
	// Recompute keeps one input per block and one shared set of block
	// activations (nn.Layout.Recompute).
	Recompute bool
}

// layout returns the nn.Layout a stage of c with the first frozen blocks
// frozen has under these options. Which blocks are frozen does not change
// the bytes, only how many.
func (o PlanOptions) layout(c nn.Config, frozen int) nn.Layout {
	lo := nn.Layout{R: o.R, Alpha: 1, Targets: o.Targets, Format: shaders.Half, Recompute: o.Recompute}
	if o.FrozenF32 {
		lo.Format = shaders.F32
	}
	if frozen > 0 {
		lo.Frozen = make([]bool, c.L)
		for l := range frozen {
			lo.Frozen[l] = true
		}
	}
	return lo
}

// Footprint is the bytes of a stage's GPU buffers by ledger category (see
// gpu.Category). Scratch holds only the model's own scratch buffers: the
// ledger's scratch also counts kernel-internal caches (matmul packing
// textures, RMSNorm partials) that the plan cannot know.
type Footprint struct {
	Params      uint64 `json:"params"`
	Grads       uint64 `json:"grads"`
	OptState    uint64 `json:"optstate"`
	Activations uint64 `json:"activations"`
	LoRA        uint64 `json:"lora"`
	Scratch     uint64 `json:"scratch"`
}

// Get returns the bytes of one ledger category (0 for staging).
func (f Footprint) Get(cat gpu.Category) uint64 {
	switch cat {
	case gpu.CatParams:
		return f.Params
	case gpu.CatGrads:
		return f.Grads
	case gpu.CatOptState:
		return f.OptState
	case gpu.CatActivations:
		return f.Activations
	case gpu.CatLoRA:
		return f.LoRA
	case gpu.CatScratch:
		return f.Scratch
	}
	return 0
}

// Total returns the bytes of every category together.
func (f Footprint) Total() uint64 {
	return f.Params + f.Grads + f.OptState + f.Activations + f.LoRA + f.Scratch
}

// buf adds one buffer of the given bytes, rounded up to gpu.Align as
// gpu.Device.NewBuffer allocates it (an empty buffer takes one unit).
func (f *Footprint) buf(cat gpu.Category, bytes uint64) {
	bytes = max(bytes, 1)
	bytes = (bytes + gpu.Align - 1) / gpu.Align * gpu.Align
	switch cat {
	case gpu.CatParams:
		f.Params += bytes
	case gpu.CatGrads:
		f.Grads += bytes
	case gpu.CatOptState:
		f.OptState += bytes
	case gpu.CatActivations:
		f.Activations += bytes
	case gpu.CatLoRA:
		f.LoRA += bytes
	case gpu.CatScratch:
		f.Scratch += bytes
	default:
		panic(fmt.Sprintf("step: plan has no category %v", cat))
	}
}

// f32 adds a float32 (or u32) buffer of n elements.
func (f *Footprint) f32(cat gpu.Category, n int) { f.buf(cat, 4*uint64(n)) }

// trained adds a trainable tensor of n elements: weight, gradient and the
// two AdamW moments, all float32, as nn.Model allocates them.
func (f *Footprint) trained(cat gpu.Category, n int) {
	f.f32(cat, n)
	f.f32(gpu.CatGrads, n)
	f.f32(gpu.CatOptState, n)
	f.f32(gpu.CatOptState, n)
}

// PlanStage returns the bytes the trainer allocates for one stage of model
// c, micro-batch c.B and sequence c.T: c.L is the stage's depth, of which
// the frozen layers (0 <= frozen < c.L) were trained in earlier stages.
//
// With frozen = 0 it mirrors nn.NewModel buffer by buffer. For frozen > 0 it
// adds STEP's extension (nn.Layout, nn.StagedSpecs): frozen layers keep only
// their weights, matrices in packed half precision (whole u32 words,
// 16-byte aligned) unless o.FrozenF32 and RMSNorm gains in float32, with no
// gradient or AdamW state; each of their adapted linear maps (o.Targets) gets
// LoRA adapters A (R, Cin) and B (Cout, R) in category lora, with
// gradients and AdamW state, and the adapter forward saves u = A x (N, R)
// as an activation. Activations are not reduced by freezing, since the
// gradient must flow through frozen layers to reach their adapters. The
// embedding, final norm and head are trained in every stage.
func PlanStage(c nn.Config, frozen int, o PlanOptions) (Footprint, error) {
	if err := c.Validate(); err != nil {
		return Footprint{}, err
	}
	if frozen < 0 || frozen >= c.L {
		return Footprint{}, fmt.Errorf("plan: frozen layers must be in 0..%d, got %d", c.L-1, frozen)
	}
	if o.R < 0 {
		return Footprint{}, fmt.Errorf("plan: LoRA rank must not be negative, got %d", o.R)
	}
	limit := o.BindingLimit
	if limit == 0 {
		limit = DefaultBindingLimit
	}
	// As shaders.CrossEntropyRowsPerChunk: whole rows of V floats in one
	// 16-byte-aligned binding.
	N := c.B * c.T
	chunk := min(N, int((limit&^(gpu.Align-1))/(4*uint64(c.V))))
	if chunk < 1 {
		return Footprint{}, fmt.Errorf("plan: one logits row of %d floats exceeds the %d-byte storage binding", c.V, limit)
	}

	var f Footprint
	var trainable []int // sizes of the trained tensors, for the grad-norm partials
	lo := o.layout(c, frozen)
	if err := lo.Validate(c); err != nil {
		return Footprint{}, err
	}
	train, froze := c.StagedSpecs(lo)
	adapted := map[string]bool{} // frozen maps with adapters
	for _, s := range train {
		if s.LoRA && strings.HasSuffix(s.Name, ".lora_a") {
			adapted[strings.TrimSuffix(s.Name, ".lora_a")] = true
		}
	}
	// merge: the largest frozen matrix widened from half or merged with its
	// adapter in scratch; grad: the largest adapted one's weight gradient.
	merge, grad := 0, 0
	for _, s := range froze {
		n := s.Numel()
		switch {
		case len(s.Shape) == 1: // RMSNorm gains stay float32
			f.f32(gpu.CatParams, n)
		default:
			f.buf(gpu.CatParams, lo.Format.Bytes(n))
			if lo.Format == shaders.Half || adapted[s.Name] {
				merge = max(merge, n)
			}
			if adapted[s.Name] {
				grad = max(grad, n)
			}
		}
	}
	for _, s := range train {
		n := s.Numel()
		trainable = append(trainable, n)
		if s.LoRA {
			f.trained(gpu.CatLoRA, n)
		} else {
			f.trained(gpu.CatParams, n)
		}
	}

	fw := forwardPlan{adapters: len(adapted) > 0, R: o.R, recompute: o.Recompute, merge: merge}
	f.forward(c, N, chunk, fw)
	if o.Sampler { // nn.NewSampler: batch-1 activations, shared weights
		f.forward(c, c.T, min(c.T, chunk), fw)
	}

	// The backward's (N, C) and (N, H) buffers, the adapters' and frozen
	// gains' sinks, the grad-norm partials and the optimizer's clip factor
	// and hyperparameters.
	for range 7 { // dx, dx2, dh, dq, dk, dv, datt
		f.f32(gpu.CatScratch, N*c.C)
	}
	for range 3 { // ds, dg, du
		f.f32(gpu.CatScratch, N*c.H)
	}
	if len(adapted) > 0 { // an adapted map's weight gradient, and s·A
		f.f32(gpu.CatScratch, grad)
		f.f32(gpu.CatScratch, max(c.C, c.H)*o.R)
	}
	if frozen > 0 { // where the frozen gains' gradients go (C)
		f.f32(gpu.CatScratch, c.C)
	}
	_, partials := shaders.GradNormPlan(trainable)
	f.f32(gpu.CatScratch, partials)
	f.f32(gpu.CatScratch, 4)
	f.f32(gpu.CatScratch, 16)
	return f, nil
}

// forward adds what a model's forward needs for N rows (nn.Model.alloc up
// to its inference cut): the activations each block saves (x, h1, q, k,
// v, att, x2, h2 (N, C); rstd1, rstd2 (N); lse (B, NH, T); g, u, s
// (N, H)), the final norm, logits chunk, losses and inputs, the loss sums,
// head row chunks and tmp scratch, and the frozen layers' merge scratch.
// With recompute the blocks keep only their inputs and share one set of
// the rest.
func (f *Footprint) forward(c nn.Config, N, chunk int, fw forwardPlan) {
	sets := c.L
	if fw.recompute { // one input per block, one shared set of the rest
		for range c.L - 1 {
			f.f32(gpu.CatActivations, N*c.C)
		}
		sets = 1
	}
	for range sets {
		for range 8 {
			f.f32(gpu.CatActivations, N*c.C)
		}
		f.f32(gpu.CatActivations, N)
		f.f32(gpu.CatActivations, N)
		f.f32(gpu.CatActivations, N/c.T*c.NH*c.T)
		for range 3 {
			f.f32(gpu.CatActivations, N*c.H)
		}
	}
	for _, n := range []int{N * c.C, N * c.C, N, chunk * c.V, N, N, N, c.V + 1, N} {
		f.f32(gpu.CatActivations, n)
	}
	f.f32(gpu.CatScratch, 4)
	f.f32(gpu.CatScratch, 4)
	if chunk < N {
		f.f32(gpu.CatScratch, chunk*c.C)
		f.f32(gpu.CatScratch, chunk*c.C)
	}
	f.f32(gpu.CatScratch, N*c.C) // tmp
	if fw.merge > 0 {            // a frozen weight widened and merged for the matmul
		f.f32(gpu.CatScratch, fw.merge)
	}
	if fw.adapters { // an adapter's scaled B
		f.f32(gpu.CatScratch, max(c.C, c.H)*fw.R)
	}
}

// forwardPlan is what a model's forward allocates beyond its config:
// whether it has adapters of rank R (their scaled B in scratch),
// recomputation, and the largest frozen matrix (elements) that is widened
// or merged with its adapter in scratch.
type forwardPlan struct {
	adapters  bool
	R         int
	recompute bool
	merge     int
}

// StagePlan is one stage of a memory plan.
type StagePlan struct {
	Added      int       `json:"added"`       // n_i
	Layers     int       `json:"layers"`      // N_i
	PaperBytes int64     `json:"paper_bytes"` // M_i
	PlanBytes  uint64    `json:"plan_bytes"`  // Plan.Total()
	Plan       Footprint `json:"plan"`
}

// Plan is the memory of a STEP run, stage by stage, next to vanilla
// pre-training of the final model, in the paper's model and in full.
type Plan struct {
	Stages            []StagePlan `json:"stages"`
	VanillaPaperBytes int64       `json:"vanilla_paper_bytes"`
	VanillaPlanBytes  uint64      `json:"vanilla_plan_bytes"`
	VanillaPlan       Footprint   `json:"vanilla_plan"`
	ReductionPaper    float64     `json:"reduction_paper"` // 1 - max_i M_i / vanilla
	ReductionPlan     float64     `json:"reduction_plan"`  // the same for the full plan's totals
}

// PlanSplit returns the plan of model c (c.L layers in the end) trained in
// stages that add the given layers, with the paper bytes for LoRA rank o.R.
func PlanSplit(c nn.Config, added []int, o PlanOptions) (Plan, error) {
	sum := 0
	for i, n := range added {
		if n < 1 {
			return Plan{}, fmt.Errorf("plan: stage %d adds %d layers, want at least 1", i+1, n)
		}
		sum += n
	}
	if len(added) == 0 || sum != c.L {
		return Plan{}, fmt.Errorf("plan: stages add %d layers in all, the model has %d", sum, c.L)
	}
	pm := PaperModelOf(c, o.R)
	if err := pm.Validate(); err != nil {
		return Plan{}, err
	}
	paper := pm.Evaluate(added)
	p := Plan{VanillaPaperBytes: pm.Vanilla()}
	var err error
	if p.VanillaPlan, err = PlanStage(c, 0, o); err != nil {
		return Plan{}, err
	}
	p.VanillaPlanBytes = p.VanillaPlan.Total()
	var worst uint64
	prev := 0
	for i, n := range added {
		sc := c
		sc.L = prev + n
		f, err := PlanStage(sc, prev, o)
		if err != nil {
			return Plan{}, fmt.Errorf("plan stage %d: %w", i+1, err)
		}
		p.Stages = append(p.Stages, StagePlan{Added: n, Layers: sc.L, PaperBytes: paper.Bytes[i], PlanBytes: f.Total(), Plan: f})
		worst = max(worst, f.Total())
		prev += n
	}
	p.ReductionPaper = paper.Reduction(p.VanillaPaperBytes)
	p.ReductionPlan = 1 - float64(worst)/float64(p.VanillaPlanBytes)
	return p, nil
}

// PlanWithin returns the plan of the smallest stage count K in 2..c.L whose
// largest stage, in the full plan, fits budget bytes. Each K's split is the
// paper model's optimum (PaperModel.Split); the error wraps ErrNoFit when no
// K fits.
func PlanWithin(c nn.Config, budget uint64, o PlanOptions) (Plan, error) {
	pm := PaperModelOf(c, o.R)
	if err := pm.Validate(); err != nil {
		return Plan{}, err
	}
	if budget == 0 {
		return Plan{}, fmt.Errorf("plan: budget must be positive")
	}
	if c.L < 2 {
		return Plan{}, fmt.Errorf("plan: %d layer cannot be split into 2 or more stages: %w", c.L, ErrNoFit)
	}
	// The last stage holds every layer's activations whatever the split:
	// a budget below them needs no search.
	vanilla, err := PlanStage(c, 0, o)
	if err != nil {
		return Plan{}, err
	}
	if budget < vanilla.Activations {
		return Plan{}, fmt.Errorf("plan: %d bytes, the activations of %d layers alone need %d: %w", budget, c.L, vanilla.Activations, ErrNoFit)
	}
	t := newSplitTable(pm)
	best := uint64(0)
	for K := 2; K <= c.L; K++ {
		p, err := PlanSplit(c, t.split(K).Added, o)
		if err != nil {
			return Plan{}, err
		}
		worst := uint64(0)
		for _, s := range p.Stages {
			worst = max(worst, s.PlanBytes)
		}
		if worst <= budget {
			return p, nil
		}
		if best == 0 || worst < best {
			best = worst
		}
	}
	return Plan{}, fmt.Errorf("plan: %d bytes, the best split needs %d: %w", budget, best, ErrNoFit)
}
