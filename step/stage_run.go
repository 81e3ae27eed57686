package step

import (
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/checkpoints"
	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/nn"
)

// ModelStepFLOPs estimates one optimizer step's floating-point work for a
// model as it is trained: StepFLOPs for trained blocks (6 per matrix
// parameter per token), 4 per frozen matrix parameter (forward and input
// gradient, no weight gradient), and each adapter's products (forward,
// input gradient and the two adapter gradients: 8·R·(Cin+Cout) per token).
func ModelStepFLOPs(m *nn.Model, tokens int) float64 {
	c := m.Cfg
	f := StepFLOPs(c, tokens)
	lo := m.Layout()
	for _, s := range m.FrozenSpecs() {
		if len(s.Shape) != 2 {
			continue
		}
		f -= 2 * float64(tokens) * float64(s.Numel())
		if an, _ := nn.LoRANames(s.Name); m.Param(an) != nil {
			f += 8 * float64(tokens) * float64(lo.R) * float64(s.Shape[0]+s.Shape[1])
		}
	}
	return f
}

// Grow ends the current stage and starts the next: it grows the model as
// the next stage's spec says (GrowModel: adapters merged, trained blocks
// frozen, fresh adapters and AdamW state), records the growth in History,
// logs it, starts the stage's ledger peak afresh and saves the grown model
// as the stage's checkpoint (stage-N.ckpt, never pruned).
func (t *Trainer) Grow() error {
	if err := t.D.Lost(); err != nil { // never grow (and save) from a lost device
		return err
	}
	next := t.Stage + 1
	o := t.Opt
	spec := o.Stages[next-1]
	g := Growth{Operator: spec.Operator, Position: spec.Position, Added: spec.Added, Seed: o.Seed + uint64(next)}
	before := t.Model.Cfg.L
	m, grown, err := GrowModel(t.D, t.Model, g, o.StageLayout(next), o.Seed+7919*uint64(next))
	t.Model = nil
	if err != nil {
		return fmt.Errorf("stage %d: %w", next, err)
	}
	t.Model = m
	t.Stage, t.StageStep = next, 0
	t.History = append(t.History, checkpoints.Growth{Stage: next, Step: t.Step, Operator: g.Operator, Position: g.Position,
		Added: g.Added, Renames: grown.Renames})
	lo := m.Layout()
	var newBlocks []string
	for i, isNew := range grown.New {
		if isNew {
			newBlocks = append(newBlocks, fmt.Sprintf("%d=%s", i, grown.Sources[i]))
		}
	}
	fmt.Fprintf(t.Log, "growth: stage %d/%d starts at step %d: %d -> %d layers (%s at %s), %d frozen (%s), LoRA rank %d; new: %s\n",
		next, t.Stages(), t.Step, before, m.Cfg.L, g.Operator, g.Position, lo.FrozenCount(), lo.Format, lo.R,
		strings.Join(newBlocks, " "))
	t.D.Ledger.ResetPeak()
	path, err := t.SaveStage()
	if err != nil {
		return err
	}
	fmt.Fprintf(t.Log, "saved %s\n", path)
	return nil
}

// StagePlan returns the full plan of the current stage for this run's
// settings (PlanStage), with the sampler's batch-1 activations when the
// run samples.
func (t *Trainer) StagePlan() (Footprint, error) {
	lo := t.Model.Layout()
	o := PlanOptions{R: lo.R, FrozenF32: lo.Format.String() == "f32", Targets: lo.Targets,
		BindingLimit: min(t.D.Limits.MaxStorageBufferBindingSize, t.D.Limits.MaxBufferSize),
		Sampler:      t.Opt.SampleEvery > 0, Recompute: lo.Recompute}
	return PlanStage(t.Model.Cfg, lo.FrozenCount(), o)
}

// StageMemory is one stage's memory, three ways: the ledger's high-water
// mark by category (what was allocated), the full plan's prediction, and
// the paper's model-state formula.
type StageMemory struct {
	Stage    int               `json:"stage"`
	Layers   int               `json:"layers"`
	Frozen   int               `json:"frozen"`
	Measured map[string]uint64 `json:"measured"` // ledger peak by category
	Planned  Footprint         `json:"planned"`
	// Model and Plan total the categories the plan covers (all but kernel
	// caches and staging); Cache is the ledger's kernel-cache peak.
	Model uint64 `json:"model_bytes"`
	Plan  uint64 `json:"plan_bytes"`
	Cache uint64 `json:"cache_bytes"`
	Paper int64  `json:"paper_bytes"`
}

// Diff returns (measured - planned) / planned for the model buffers.
func (s StageMemory) Diff() float64 {
	return (float64(s.Model) - float64(s.Plan)) / float64(max(1, s.Plan))
}

// reportMemory records the stage's memory in t.Memory and prints the
// ledger's high-water mark by category next to the full plan's prediction
// and the paper's formula.
func (t *Trainer) reportMemory() {
	snap := t.D.Ledger.Snapshot()
	plan, err := t.StagePlan()
	if err != nil {
		fmt.Fprintf(t.Log, "memory stage %d/%d: no plan: %v\n", t.Stage, t.Stages(), err)
		return
	}
	lo := t.Model.Layout()
	frozen := lo.FrozenCount()
	sm := StageMemory{Stage: t.Stage, Layers: t.Model.Cfg.L, Frozen: frozen, Measured: snap.Peak, Planned: plan,
		Cache: snap.Peak[gpu.CatCache.String()],
		Paper: PaperModelOf(t.Model.Cfg, lo.R).StageBytes(t.Model.Cfg.L-frozen, frozen)}
	var parts []string
	for _, c := range gpu.Categories() {
		if c == gpu.CatCache || c == gpu.CatStaging {
			continue
		}
		got, want := snap.Peak[c.String()], plan.Get(c)
		sm.Model += got
		sm.Plan += want
		if got > 0 || want > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f/%.2f", c, gpu.MiB(got), gpu.MiB(want)))
		}
	}
	t.Memory = append(t.Memory, sm)
	fmt.Fprintf(t.Log, "memory stage %d/%d (MiB, measured/planned): %s | model buffers %.2f/%.2f (%+.2f%%) | kernel caches %.2f | paper formula %.2f\n",
		t.Stage, t.Stages(), strings.Join(parts, ", "), gpu.MiB(sm.Model), gpu.MiB(sm.Plan), 100*sm.Diff(),
		gpu.MiB(sm.Cache), float64(sm.Paper)/(1<<20))
}
