package step

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/step-gpu/step-gpu/nn"
)

// The growth operators of STEP.md: how a new block's initial weights are
// made from the trained stack.
const (
	// OpMean makes a new block the element-wise mean of its two
	// neighbours, or a copy of its one neighbour at the top or bottom.
	OpMean = "mean"
	// OpCopy copies the block below (the one above at the bottom).
	OpCopy = "copy"
	// OpIdentity draws fresh weights and zeroes the attention output and
	// MLP down projections, so the grown model computes what it did.
	OpIdentity = "identity"
	// OpStack puts copies of the whole trained stack, bottom first, on top.
	OpStack = "stack"
)

// The positions where mean, copy and identity insert new blocks.
const (
	PosUpper        = "upper"        // above the top block
	PosIntermediate = "intermediate" // in the gaps between blocks, spread evenly
	PosLower        = "lower"        // below the bottom block
	PosRandom       = "random"       // seeded random slots among all L+1
)

// Operators and Positions list the accepted names, default first.
var (
	Operators = []string{OpMean, OpCopy, OpIdentity, OpStack}
	Positions = []string{PosUpper, PosIntermediate, PosLower, PosRandom}
)

// Growth says how one growth adds blocks.
type Growth struct {
	Operator string `msgpack:"operator"`
	Position string `msgpack:"position"`
	Added    int    `msgpack:"added"`
	// Seed draws the random slots and the identity operator's weights.
	Seed uint64 `msgpack:"seed"`
}

// Validate checks the operator, position and count.
func (g Growth) Validate() error {
	if !slices.Contains(Operators, g.Operator) {
		return fmt.Errorf("unknown growth operator %q (want one of %s)", g.Operator, strings.Join(Operators, ", "))
	}
	if !slices.Contains(Positions, g.Position) {
		return fmt.Errorf("unknown growth position %q (want one of %s)", g.Position, strings.Join(Positions, ", "))
	}
	if g.Added < 1 {
		return fmt.Errorf("growth must add at least 1 layer, got %d", g.Added)
	}
	return nil
}

// Grown is the result of a growth: the new config and weights, which blocks
// are new, and where each old block went.
type Grown struct {
	Config  nn.Config
	Weights map[string][]float32
	// New flags the new blocks (len Config.L); the others were trained.
	New []bool
	// Renames maps each old block's name prefix ("layers.3.") to its new
	// one; the embedding, final norm and head keep their names.
	Renames map[string]string
	// Sources describes each block's origin, e.g. "old 3", "mean(2,3)".
	Sources []string
}

// slot is where a new block goes: between old blocks below and above (-1
// or L where there is none).
type slot struct{ below, above int }

// growOrder returns, for each block of the grown stack bottom to top, the
// old block it is (>= 0) or the slot of a new one.
func growOrder(L int, g Growth) (old []int, slots []slot) {
	// gaps[i] counts the new blocks inserted just below old block i
	// (i = L: above the top).
	gaps := make([]int, L+1)
	switch {
	case g.Operator == OpStack || g.Position == PosUpper:
		gaps[L] = g.Added
	case g.Position == PosLower:
		gaps[0] = g.Added
	case g.Position == PosIntermediate:
		if L == 1 { // no gap between blocks: above the only one
			gaps[1] = g.Added
			break
		}
		G := L - 1 // gaps 1..L-1, between block i-1 and i
		for k := range g.Added {
			gaps[1+(2*k+1)*G/(2*g.Added)]++
		}
	case g.Position == PosRandom:
		rng := rand.New(rand.NewPCG(g.Seed, 0x6703))
		for range g.Added {
			gaps[rng.IntN(L+1)]++
		}
	}
	for i := 0; i <= L; i++ {
		for range gaps[i] {
			old = append(old, -1)
			slots = append(slots, slot{below: i - 1, above: i})
		}
		if i < L {
			old = append(old, i)
			slots = append(slots, slot{})
		}
	}
	return old, slots
}

// Grow applies one growth to a trained model's weights (every tensor of
// cfg.ParamSpecs, adapters already merged): new blocks are made by the
// operator at the position, old blocks are renamed to their new index, and
// the embedding, final norm and head are carried over. The weights of the
// input are not modified; the result shares no slices with it.
func Grow(cfg nn.Config, weights map[string][]float32, g Growth) (Grown, error) {
	if err := g.Validate(); err != nil {
		return Grown{}, err
	}
	for _, s := range cfg.ParamSpecs() {
		if len(weights[s.Name]) != s.Numel() {
			return Grown{}, fmt.Errorf("grow: tensor %s has %d values, want %d", s.Name, len(weights[s.Name]), s.Numel())
		}
	}
	L := cfg.L
	old, slots := growOrder(L, g)
	nc := cfg
	nc.L = len(old)
	out := Grown{Config: nc, Weights: map[string][]float32{}, New: make([]bool, nc.L), Renames: map[string]string{},
		Sources: make([]string, nc.L)}
	for _, n := range []string{"tok_emb", "norm", "lm_head"} {
		out.Weights[n] = slices.Clone(weights[n])
	}
	layer := func(l int) []string { return nn.LayerNames(l) }
	stackNext := 0
	for nl, ol := range old {
		dst := layer(nl)
		if ol >= 0 {
			out.Renames[fmt.Sprintf("layers.%d.", ol)] = fmt.Sprintf("layers.%d.", nl)
			out.Sources[nl] = fmt.Sprintf("old %d", ol)
			for i, src := range layer(ol) {
				out.Weights[dst[i]] = slices.Clone(weights[src])
			}
			continue
		}
		out.New[nl] = true
		s := slots[nl]
		switch g.Operator {
		case OpStack:
			src := stackNext % L
			stackNext++
			out.Sources[nl] = fmt.Sprintf("copy(%d)", src)
			for i, n := range layer(src) {
				out.Weights[dst[i]] = slices.Clone(weights[n])
			}
		case OpCopy, OpMean:
			a, b := s.below, s.above
			if b >= L || (g.Operator == OpCopy && a >= 0) {
				b = -1 // copy: the block below; mean at the top: copy of the top
			}
			if a < 0 {
				a, b = b, -1 // at the bottom: the block above
			}
			if b < 0 {
				out.Sources[nl] = fmt.Sprintf("copy(%d)", a)
			} else {
				out.Sources[nl] = fmt.Sprintf("mean(%d,%d)", a, b)
			}
			for i := range dst {
				x := slices.Clone(weights[layer(a)[i]])
				if b >= 0 {
					y := weights[layer(b)[i]]
					for j := range x {
						x[j] = (x[j] + y[j]) / 2
					}
				}
				out.Weights[dst[i]] = x
			}
		case OpIdentity:
			out.Sources[nl] = "identity"
			for _, spec := range nc.LayerSpecs(nl) {
				v := nn.InitTensor(spec, g.Seed)
				if strings.HasSuffix(spec.Name, ".attn.wo") || strings.HasSuffix(spec.Name, ".mlp.w2") {
					clear(v)
				}
				out.Weights[spec.Name] = v
			}
		}
	}
	return out, nil
}

// RenameTable returns the growth's renames as sorted "old -> new" lines.
func (g Grown) RenameTable() []string {
	var lines []string
	for o, n := range g.Renames {
		lines = append(lines, o+" -> "+n)
	}
	sort.Strings(lines)
	return lines
}
