package step

import (
	"errors"
	"fmt"
	"math"

	"github.com/step-gpu/step-gpu/nn"
)

// MaxPlanLayers bounds L in the paper model's search. The search costs
// O(K L^2) per stage count; 1024 layers keep even a budget search over every
// K in 2..L to about a second.
const MaxPlanLayers = 1024

// ErrNoFit says that no stage count fits a memory budget.
var ErrNoFit = errors.New("no stage count fits the budget")

// PaperModel is the STEP paper's memory model of model states (Yano et al.,
// NAACL 2025, section 3): a trained parameter costs 16 bytes (fp16 weight and
// gradient, fp32 master copy and two Adam moments), a frozen one 2 bytes, and
// a stage that adds n_i layers on top of N_{i-1} frozen ones needs
//
//	M_i = 16*n_i*P + 2*N_{i-1}*P + 16*N_{i-1}*E bytes.
//
// Only transformer layers count: no embeddings, head or activations.
type PaperModel struct {
	L int   // layers of the final model
	P int64 // parameters of one layer
	E int64 // LoRA parameters attached to one frozen layer
}

// LoRAParams returns E, the LoRA parameters of rank R on all seven linear
// maps of one block: A (R, Cin) and B (Cout, R) each, that is
// R*(4*2C + 3*(C + H)) for the four C x C attention projections and the
// SwiGLU w1, w3 (H x C) and w2 (C x H).
func LoRAParams(C, H, R int) int64 {
	return int64(R) * (4*2*int64(C) + 3*(int64(C)+int64(H)))
}

// PaperModelOf returns the paper model of a config with LoRA rank R. P is
// nn.Config.LayerParams, which includes the block's two RMSNorm gains (2C
// parameters): they are trained and frozen with their layer.
func PaperModelOf(c nn.Config, R int) PaperModel {
	return PaperModel{L: c.L, P: int64(c.LayerParams()), E: LoRAParams(c.C, c.H, R)}
}

// Validate returns an error naming the first bad field. Besides the signs it
// makes sure that no byte count of the model overflows int64.
func (m PaperModel) Validate() error {
	switch {
	case m.L < 1:
		return fmt.Errorf("paper model: layers must be positive, got %d", m.L)
	case m.L > MaxPlanLayers:
		return fmt.Errorf("paper model: %d layers exceed the planner's limit of %d", m.L, MaxPlanLayers)
	case m.P < 1:
		return fmt.Errorf("paper model: layer parameters must be positive, got %d", m.P)
	case m.E < 0:
		return fmt.Errorf("paper model: LoRA parameters must not be negative, got %d", m.E)
	}
	// Every M_i is at most 16*L*(P+E).
	if lim := int64(math.MaxInt64) / (16 * int64(m.L)); m.P > lim || m.E > lim-m.P {
		return fmt.Errorf("paper model: %d layers of %d parameters with %d LoRA parameters overflow a 64-bit byte count", m.L, m.P, m.E)
	}
	return nil
}

// StageBytes returns M_i for a stage that adds n layers on top of prev
// frozen ones.
func (m PaperModel) StageBytes(n, prev int) int64 {
	return 16*int64(n)*m.P + 2*int64(prev)*m.P + 16*int64(prev)*m.E
}

// Vanilla returns the bytes of ordinary pre-training of all L layers, 16*L*P.
func (m PaperModel) Vanilla() int64 { return 16 * int64(m.L) * m.P }

// Split is a division of L layers into stages and its paper bytes.
type Split struct {
	Added []int   // n_i: layers added in stage i
	Bytes []int64 // M_i
	Max   int64   // max_i M_i
}

// Reduction returns 1 - max/vanilla, the fraction of vanilla's model-state
// memory that the split saves.
func (s Split) Reduction(vanilla int64) float64 {
	return 1 - float64(s.Max)/float64(vanilla)
}

// Evaluate returns the split with the given added layers and its bytes. It
// does not check that the parts sum to L.
func (m PaperModel) Evaluate(added []int) Split {
	s := Split{Added: append([]int(nil), added...), Bytes: make([]int64, len(added))}
	prev := 0
	for i, n := range added {
		s.Bytes[i] = m.StageBytes(n, prev)
		s.Max = max(s.Max, s.Bytes[i])
		prev += n
	}
	return s
}

// splitTable is the search's dynamic programme. rem[r][u] is the smallest
// possible max_i M_i over the last r stages when u layers are already in the
// model (N = u) and the r stages must add exactly the other L-u layers, one
// or more each; noFit where that is impossible. It does not depend on K, so
// one table answers every stage count up to its number of rows:
//
//	rem[0][L] = 0, rem[0][u < L] = noFit,
//	rem[r][u] = min over n in 1..L-u of max(M(n, u), rem[r-1][u+n]).
type splitTable struct {
	m   PaperModel
	rem [][]int64
}

const noFit = int64(math.MaxInt64)

func newSplitTable(m PaperModel) *splitTable {
	row := make([]int64, m.L+1)
	for u := range row {
		row[u] = noFit
	}
	row[m.L] = 0
	return &splitTable{m: m, rem: [][]int64{row}}
}

// grow adds the row for one more remaining stage.
func (t *splitTable) grow() {
	L, prevRow := t.m.L, t.rem[len(t.rem)-1]
	row := make([]int64, L+1)
	for u := 0; u <= L; u++ {
		best := noFit
		for n := 1; u+n <= L; n++ {
			rest := prevRow[u+n]
			if rest == noFit {
				continue
			}
			best = min(best, max(t.m.StageBytes(n, u), rest))
		}
		row[u] = best
	}
	t.rem = append(t.rem, row)
}

// optimum returns the smallest max_i M_i over the K-stage splits, growing
// the table as needed.
func (t *splitTable) optimum(K int) int64 {
	for len(t.rem) <= K {
		t.grow()
	}
	return t.rem[K][0]
}

// split returns the lexicographically smallest K-stage split whose maximum
// is the optimum: stage by stage, the fewest layers that still allow the
// remaining stages to finish within the optimum.
func (t *splitTable) split(K int) Split {
	best := t.optimum(K)
	added := make([]int, 0, K)
	u := 0
	for r := K; r > 0; r-- {
		n := 1
		for ; u+n <= t.m.L; n++ {
			if rest := t.rem[r-1][u+n]; rest != noFit && max(t.m.StageBytes(n, u), rest) <= best {
				break
			}
		}
		added = append(added, n)
		u += n
	}
	return t.m.Evaluate(added)
}

// Split returns the K-stage split that minimises max_i M_i, ties broken by
// the lexicographically smallest (n_1, ..., n_K). It is exact: a dynamic
// programme over (stages left, layers used) in O(K L^2).
func (m PaperModel) Split(K int) (Split, error) {
	if err := m.Validate(); err != nil {
		return Split{}, err
	}
	if K < 1 || K > m.L {
		return Split{}, fmt.Errorf("paper model: stages must be in 1..L (%d), got %d", m.L, K)
	}
	return newSplitTable(m).split(K), nil
}

// SplitWithin returns the split (as Split gives it) of the smallest stage
// count K in 2..L whose maximum fits budget bytes, or an error wrapping
// ErrNoFit.
func (m PaperModel) SplitWithin(budget int64) (Split, error) {
	if err := m.Validate(); err != nil {
		return Split{}, err
	}
	if budget <= 0 {
		return Split{}, fmt.Errorf("paper model: budget must be positive, got %d bytes", budget)
	}
	if m.L < 2 {
		return Split{}, fmt.Errorf("paper model: %d layer cannot be split into 2 or more stages: %w", m.L, ErrNoFit)
	}
	// Every split's first stage trains at least one layer, and its last
	// stage holds all L layers, each either trained (16P) or frozen with
	// adapters (2P + 16E): a bound that rules out hopeless budgets without
	// searching all K.
	lower := max(16*m.P, int64(m.L)*min(16*m.P, 2*m.P+16*m.E))
	if budget < lower {
		return Split{}, fmt.Errorf("paper model: %d bytes, every split needs at least %d: %w", budget, lower, ErrNoFit)
	}
	t := newSplitTable(m)
	best := noFit
	for K := 2; K <= m.L; K++ {
		opt := t.optimum(K)
		best = min(best, opt)
		if opt <= budget {
			return t.split(K), nil
		}
	}
	return Split{}, fmt.Errorf("paper model: %d bytes, the best split needs %d: %w", budget, best, ErrNoFit)
}
