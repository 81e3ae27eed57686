package nn

import (
	"fmt"
	"math"
	"slices"

	"github.com/step-gpu/step-gpu/shaders"
)

// LinearNames lists the seven linear maps of a block, by their name inside
// the block, in the order LayerNames gives them.
var LinearNames = []string{"attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.w1", "mlp.w3", "mlp.w2"}

// Layout says which blocks of a model are frozen and how they are trained,
// as a STEP stage needs it. A frozen block keeps its weights in Format with
// no gradient and no optimizer state; the linear maps named in Targets get
// LoRA adapters A (R, Cin) and B (Cout, R), y = x·Wᵀ + (Alpha/R)·(x·Aᵀ)·Bᵀ,
// which are trained. Its RMSNorm gains freeze with it and stay float32 (two
// vectors of C per block). The zero Layout is vanilla training.
type Layout struct {
	// Frozen has one flag per block (len L), or is empty when none is.
	Frozen []bool `msgpack:"frozen"`
	// R is the adapters' rank; 0 trains no adapters (frozen blocks are
	// then fixed functions).
	R int `msgpack:"r"`
	// Alpha sets the adapters' scale Alpha/R.
	Alpha float64 `msgpack:"alpha"`
	// Targets names the adapted linear maps (LinearNames); empty means
	// all seven.
	Targets []string `msgpack:"targets"`
	// Format is how frozen weight matrices are stored on the device.
	Format shaders.WeightFormat `msgpack:"format"`
	// Recompute saves only each block's input for the backward: the other
	// activations live in one set of buffers that the blocks share, and the
	// backward recomputes a block's forward before its gradient (activation
	// checkpointing per block: about one more forward pass per step).
	Recompute bool `msgpack:"recompute"`
}

// IsFrozen reports whether block l is frozen.
func (lo Layout) IsFrozen(l int) bool { return l >= 0 && l < len(lo.Frozen) && lo.Frozen[l] }

// FrozenCount returns the number of frozen blocks.
func (lo Layout) FrozenCount() int {
	n := 0
	for _, f := range lo.Frozen {
		if f {
			n++
		}
	}
	return n
}

// Scale returns the adapters' scale Alpha/R (0 without adapters).
func (lo Layout) Scale() float32 {
	if lo.R == 0 {
		return 0
	}
	return float32(lo.Alpha / float64(lo.R))
}

// Adapted reports whether the linear map named short (e.g. "attn.wq") of a
// frozen block carries an adapter.
func (lo Layout) Adapted(short string) bool {
	if lo.R == 0 {
		return false
	}
	return len(lo.Targets) == 0 || slices.Contains(lo.Targets, short)
}

// Validate checks the layout against the model config.
func (lo Layout) Validate(c Config) error {
	if len(lo.Frozen) != 0 && len(lo.Frozen) != c.L {
		return fmt.Errorf("layout: %d frozen flags for %d layers", len(lo.Frozen), c.L)
	}
	if lo.R < 0 {
		return fmt.Errorf("layout: LoRA rank %d is negative", lo.R)
	}
	if lo.R > 0 && !(lo.Alpha > 0) {
		return fmt.Errorf("layout: LoRA alpha must be positive, got %g", lo.Alpha)
	}
	for _, t := range lo.Targets {
		if !slices.Contains(LinearNames, t) {
			return fmt.Errorf("layout: unknown LoRA target %q (want some of %v)", t, LinearNames)
		}
	}
	if lo.Format != shaders.F32 && lo.Format != shaders.Half {
		return fmt.Errorf("layout: unknown frozen weight format %v", lo.Format)
	}
	return nil
}

// LoRANames returns the names of the adapter tensors of a linear map:
// name + ".lora_a" and name + ".lora_b".
func LoRANames(name string) (a, b string) { return name + ".lora_a", name + ".lora_b" }

// StagedSpecs splits the model's parameters under a layout: trainable lists
// what gets gradients and AdamW state (the embedding, final norm and head,
// every tensor of a trained block, and each adapter, A after its block's
// tensors), frozen the tensors of frozen blocks. Adapter A starts
// Kaiming-uniform (bound 1/sqrt(Cin)) and B at zero, so a fresh adapter
// changes nothing.
func (c Config) StagedSpecs(lo Layout) (trainable, frozen []ParamSpec) {
	all := c.ParamSpecs()
	for _, s := range all {
		if !lo.IsFrozen(s.Layer) {
			trainable = append(trainable, s)
			continue
		}
		frozen = append(frozen, s)
		short := s.Name[len(fmt.Sprintf("layers.%d.", s.Layer)):]
		if len(s.Shape) == 2 && lo.Adapted(short) {
			an, bn := LoRANames(s.Name)
			cout, cin := s.Shape[0], s.Shape[1]
			trainable = append(trainable,
				ParamSpec{Name: an, Shape: []int{lo.R, cin}, Layer: s.Layer, Bound: 1 / math.Sqrt(float64(cin)), LoRA: true},
				ParamSpec{Name: bn, Shape: []int{cout, lo.R}, Layer: s.Layer, Zero: true, LoRA: true})
		}
	}
	return trainable, frozen
}

// MergeAdapters records W += (Alpha/R)·B·A into every adapted frozen weight,
// in the weight's own format (shaders.MergeLoRA), and flushes. STEP does this
// at each growth before the grown model gets fresh adapters; the adapters
// themselves are left as they were.
func (m *Model) MergeAdapters() error {
	r := m.D.NewRecorder()
	for _, s := range m.frozen {
		an, bn := LoRANames(s.Name)
		a, b := m.params[an], m.params[bn]
		if a == nil || b == nil {
			continue
		}
		if err := shaders.MergeLoRA(r, m.params[s.Name], a, b, s.Shape[0], s.Shape[1], m.layout.R, m.layout.Scale(),
			m.Format(s.Name)); err != nil {
			return fmt.Errorf("merge adapters of %s: %w", s.Name, err)
		}
	}
	return r.Flush()
}
