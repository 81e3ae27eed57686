package step

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/nn"
)

// TestPaperSplitVectors checks the test vectors of STEP.md (P = 1, E = 0).
func TestPaperSplitVectors(t *testing.T) {
	for _, tc := range []struct {
		L, K      int
		want      []int
		max       int64
		reduction float64 // percent, as STEP.md prints it (one decimal)
	}{
		{24, 2, []int{13, 11}, 208, 45.8},
		{24, 3, []int{9, 8, 7}, 146, 62.0},
		{32, 2, []int{17, 15}, 274, 46.5},
	} {
		m := PaperModel{L: tc.L, P: 1, E: 0}
		s, err := m.Split(tc.K)
		require.NoError(t, err)
		require.Equal(t, tc.want, s.Added, "L=%d K=%d", tc.L, tc.K)
		require.Equal(t, tc.max, s.Max)
		require.Equal(t, tc.reduction, math.Round(1000*s.Reduction(m.Vanilla()))/10)
	}
}

// bruteSplit enumerates every composition of L into K positive parts in
// lexicographic order and keeps the first with the smallest maximum.
func bruteSplit(m PaperModel, K int) Split {
	var best Split
	best.Max = -1
	parts := make([]int, 0, K)
	var rec func(left int)
	rec = func(left int) {
		if len(parts) == K-1 {
			s := m.Evaluate(append(parts, left))
			if best.Max < 0 || s.Max < best.Max {
				best = s
			}
			return
		}
		for n := 1; n <= left-(K-1-len(parts)); n++ {
			parts = append(parts, n)
			rec(left - n)
			parts = parts[:len(parts)-1]
		}
	}
	rec(m.L)
	return best
}

// TestPaperSplitMatchesBruteForce cross-checks the dynamic programme with
// plain enumeration, ties included, for small L and several E/P ratios
// (0, the 368M model's rank-64 ratio, and adapters larger than the layer).
func TestPaperSplitMatchesBruteForce(t *testing.T) {
	for _, pe := range [][2]int64{{1, 0}, {100, 10}, {7, 3}, {5, 8}, {3, 1}} {
		for L := 1; L <= 13; L++ {
			for K := 1; K <= min(L, 5); K++ {
				m := PaperModel{L: L, P: pe[0], E: pe[1]}
				got, err := m.Split(K)
				require.NoError(t, err)
				want := bruteSplit(m, K)
				require.Equal(t, want.Added, got.Added, "L=%d K=%d P=%d E=%d", L, K, m.P, m.E)
				require.Equal(t, want.Max, got.Max)
				require.Equal(t, want.Bytes, got.Bytes)
			}
		}
	}
}

// TestPaperSplitLarge checks that L = 100, K = 8 (about 10^10 compositions)
// is solved by the dynamic programme quickly and gives a valid optimum: no
// single move of one layer between two stages lowers the maximum.
func TestPaperSplitLarge(t *testing.T) {
	m := PaperModelOf(mustPreset(t, "368m"), 64)
	m.L = 100
	start := time.Now()
	s, err := m.Split(8)
	require.NoError(t, err)
	// Generous: the search takes milliseconds; this only catches an
	// accidental exponential enumeration.
	require.Less(t, time.Since(start), 5*time.Second)
	sum := 0
	for _, n := range s.Added {
		require.Positive(t, n)
		sum += n
	}
	require.Equal(t, 100, sum)
	for i := range s.Added {
		for j := range s.Added {
			if i == j || s.Added[i] == 1 {
				continue
			}
			moved := slices.Clone(s.Added)
			moved[i]--
			moved[j]++
			require.GreaterOrEqual(t, m.Evaluate(moved).Max, s.Max, "moving a layer from stage %d to %d", i+1, j+1)
		}
	}
}

func TestPaperSplitWithin(t *testing.T) {
	m := PaperModel{L: 24, P: 1, E: 0}
	s, err := m.SplitWithin(208)
	require.NoError(t, err)
	require.Equal(t, []int{13, 11}, s.Added)

	// 207 bytes: K = 2 no longer fits, K = 3 does (146).
	s, err = m.SplitWithin(207)
	require.NoError(t, err)
	require.Equal(t, []int{9, 8, 7}, s.Added)

	// The smallest K that fits: every smaller K's optimum is over budget.
	s, err = m.SplitWithin(100)
	require.NoError(t, err)
	require.LessOrEqual(t, s.Max, int64(100))
	for K := 2; K < len(s.Added); K++ {
		o, err := m.Split(K)
		require.NoError(t, err)
		require.Greater(t, o.Max, int64(100), "K=%d", K)
	}

	// 1 is below the quick bound (48: every layer at least 2 bytes in the
	// last stage); 55 is above it but below the best split (the last stage
	// needs 16*n_K + 2*(24-n_K) >= 62).
	for _, budget := range []int64{1, 55} {
		_, err = m.SplitWithin(budget)
		require.ErrorIs(t, err, ErrNoFit, "budget %d", budget)
	}
	_, err = PaperModel{L: 1, P: 1}.SplitWithin(1000)
	require.ErrorIs(t, err, ErrNoFit)
	_, err = m.SplitWithin(0)
	require.Error(t, err)
}

func TestPaperModelRejectsBadInput(t *testing.T) {
	ok := PaperModel{L: 4, P: 10, E: 1}
	for _, K := range []int{0, -1, 5} {
		_, err := ok.Split(K)
		require.Error(t, err, "K=%d", K)
	}
	for _, m := range []PaperModel{
		{L: 0, P: 1}, {L: -3, P: 1}, {L: 4, P: 0}, {L: 4, P: -2}, {L: 4, P: 1, E: -1},
		{L: MaxPlanLayers + 1, P: 1}, {L: 24, P: math.MaxInt64 / 100}, {L: 24, P: 1, E: math.MaxInt64 / 300},
	} {
		_, err := m.Split(1)
		require.Error(t, err, "%+v", m)
	}
}

func mustPreset(t *testing.T, name string) nn.Config {
	c, err := nn.Preset(name)
	require.NoError(t, err)
	return c
}

// TestPaperModelOf368M pins P and E of the 368M config at rank 64: P counts
// the four C x C projections, the three SwiGLU matrices and the two RMSNorm
// gains; E = R*(4*2C + 3*(C + H)).
func TestPaperModelOf368M(t *testing.T) {
	m := PaperModelOf(mustPreset(t, "368m"), 64)
	require.Equal(t, PaperModel{L: 24, P: 4*1024*1024 + 3*1024*2736 + 2*1024, E: 64 * (8*1024 + 3*(1024+2736))}, m)
	require.Equal(t, int64(12_601_344), m.P)
	require.Equal(t, int64(1_246_208), m.E)
}

// planTestConfig is small enough to compute by hand: N = B*T = 5.
var planTestConfig = nn.Config{V: 7, C: 4, L: 2, NH: 2, H: 6, T: 5, B: 1, RoPE: 10000, NormEps: 1e-5}

// TestPlanStageFrozenLayer checks a frozen layer's bytes against numbers
// worked out by hand for C = 4, H = 6, R = 3, N = 5 (16-byte rounding of
// every buffer, half weights in whole u32 words).
func TestPlanStageFrozenLayer(t *testing.T) {
	c := planTestConfig
	o := PlanOptions{R: 3}
	full, err := PlanStage(c, 0, o)
	require.NoError(t, err)
	step2, err := PlanStage(c, 1, o)
	require.NoError(t, err)
	require.Zero(t, full.LoRA)

	// One layer trained in f32: gains 16+16, wq..wo 4*64, w1, w3, w2 3*96.
	const trained = 16 + 16 + 4*64 + 3*96
	// Frozen in half: gains 2*16, wq..wo 4*32, w1, w3, w2 3*48.
	const frozenHalf = 2*16 + 4*32 + 3*48
	// Adapters: wq..wo A (3, 4) 48 + B (4, 3) 48; w1, w3 A (3, 4) 48 +
	// B (6, 3) 80; w2 A (3, 6) 80 + B (4, 3) 48.
	const lora = 4*(48+48) + 2*(48+80) + (80 + 48)
	require.Equal(t, full.Params-trained+frozenHalf, step2.Params)
	require.Equal(t, full.Grads-trained+lora, step2.Grads)
	require.Equal(t, full.OptState-2*trained+2*lora, step2.OptState)
	require.Equal(t, uint64(lora), step2.LoRA)
	// Adapters save no activations: they are merged into their weight.
	require.Equal(t, full.Activations, step2.Activations)

	// Frozen weights in f32 take the trained weights' bytes.
	f32, err := PlanStage(c, 1, PlanOptions{R: 3, FrozenF32: true})
	require.NoError(t, err)
	require.Equal(t, full.Params, f32.Params)

	// Rank 0: no adapters at all.
	bare, err := PlanStage(c, 1, PlanOptions{})
	require.NoError(t, err)
	require.Zero(t, bare.LoRA)
	require.Equal(t, full.Activations, bare.Activations)
}

// TestPlanStageLogitsChunk checks the logits chunk against the binding
// limit: 64 bytes hold two rows of V = 7 floats, so the (2, V) logits take
// 64 bytes and two (2, C) row chunks appear in scratch.
func TestPlanStageLogitsChunk(t *testing.T) {
	c := planTestConfig
	whole, err := PlanStage(c, 0, PlanOptions{})
	require.NoError(t, err)
	chunked, err := PlanStage(c, 0, PlanOptions{BindingLimit: 64 + 15})
	require.NoError(t, err)
	require.Equal(t, whole.Activations-144+64, chunked.Activations, "logits (5, 7) 140 -> 144 bytes; (2, 7) 56 -> 64")
	require.Equal(t, whole.Scratch+2*32, chunked.Scratch)

	_, err = PlanStage(c, 0, PlanOptions{BindingLimit: 16})
	require.ErrorContains(t, err, "logits row")
}

func TestPlanStageRejectsBadInput(t *testing.T) {
	c := planTestConfig
	for _, frozen := range []int{-1, 2, 3} {
		_, err := PlanStage(c, frozen, PlanOptions{})
		require.Error(t, err, "frozen %d", frozen)
	}
	_, err := PlanStage(c, 0, PlanOptions{R: -1})
	require.Error(t, err)
	bad := c
	bad.B = 0
	_, err = PlanStage(bad, 0, PlanOptions{})
	require.Error(t, err)
	for _, added := range [][]int{nil, {1}, {3}, {2, 0}, {3, -1}} {
		_, err := PlanSplit(c, added, PlanOptions{R: 1})
		require.Error(t, err, "added %v", added)
	}
}

// TestPlanSplitStages checks that a plan's first stage is vanilla training
// of its layers and that the reductions follow from the stage maxima.
func TestPlanSplitStages(t *testing.T) {
	c := mustPreset(t, "368m")
	o := PlanOptions{R: 64}
	p, err := PlanSplit(c, []int{13, 11}, o)
	require.NoError(t, err)
	require.Len(t, p.Stages, 2)
	first := c
	first.L = 13
	want, err := PlanStage(first, 0, o)
	require.NoError(t, err)
	require.Equal(t, want, p.Stages[0].Plan)
	require.Equal(t, 24, p.Stages[1].Layers)
	require.Equal(t, int64(16*24*12_601_344), p.VanillaPaperBytes)
	worst := max(p.Stages[0].PlanBytes, p.Stages[1].PlanBytes)
	require.InDelta(t, 1-float64(worst)/float64(p.VanillaPlanBytes), p.ReductionPlan, 1e-12)
	paper := max(p.Stages[0].PaperBytes, p.Stages[1].PaperBytes)
	require.InDelta(t, 1-float64(paper)/float64(p.VanillaPaperBytes), p.ReductionPaper, 1e-12)

	// A budget just above a plan's largest stage picks a K no larger than
	// that plan's, and the chosen plan fits.
	w, err := PlanWithin(c, worst, o)
	require.NoError(t, err)
	require.Len(t, w.Stages, 2)
	for _, s := range w.Stages {
		require.LessOrEqual(t, s.PlanBytes, worst)
	}
	_, err = PlanWithin(c, 1<<20, o)
	require.ErrorIs(t, err, ErrNoFit)
}

// TestPlanMatchesLedger builds a model on the device and checks that the
// plan's bytes per ledger category are the bytes nn.NewModel allocated.
// Scratch is compared as a lower bound: the ledger's scratch category also
// holds kernel-internal caches that the plan leaves out.
func TestPlanMatchesLedger(t *testing.T) {
	d := gputest.Device(t)
	c3 := nn.Config{V: 97, C: 32, L: 3, NH: 4, H: 88, T: 13, B: 3, RoPE: 10000, NormEps: 1e-5}
	c1 := nn.Config{V: 300, C: 16, L: 1, NH: 2, H: 40, T: 7, B: 1, RoPE: 10000, NormEps: 1e-5}
	for _, c := range []struct {
		name   string
		cfg    nn.Config
		frozen []bool
		o      PlanOptions
	}{
		{"vanilla_L3", c3, nil, PlanOptions{R: 64}},
		{"vanilla_L1", c1, nil, PlanOptions{R: 64}},
		{"frozen_half_R8", c3, []bool{true, false, true}, PlanOptions{R: 8}},
		{"frozen_f32_R5_subset", c3, []bool{false, true, false}, PlanOptions{R: 5, FrozenF32: true, Targets: []string{"attn.wq", "mlp.w2"}}},
		{"frozen_no_lora", c3, []bool{true, true, false}, PlanOptions{}},
		{"recompute_vanilla", c3, nil, PlanOptions{Recompute: true}},
		{"recompute_frozen_subset", c3, []bool{true, false, true}, PlanOptions{R: 4, Recompute: true, Targets: []string{"attn.wk", "mlp.w1"}}},
		{"recompute_sampler", c3, []bool{true, true, false}, PlanOptions{R: 4, Recompute: true, Sampler: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			frozen := 0
			for _, f := range c.frozen {
				if f {
					frozen++
				}
			}
			lo := c.o.layout(c.cfg, frozen)
			lo.Frozen = c.frozen
			before := d.Ledger.Snapshot().Current
			m, err := nn.NewStagedModel(d, c.cfg, lo, 1)
			require.NoError(t, err)
			if c.o.Sampler {
				sm, err := nn.NewSampler(m)
				require.NoError(t, err)
				defer sm.Release()
			}
			after := d.Ledger.Snapshot().Current
			m.Release()

			o := c.o
			o.BindingLimit = min(d.Limits.MaxStorageBufferBindingSize, d.Limits.MaxBufferSize)
			plan, err := PlanStage(c.cfg, frozen, o)
			require.NoError(t, err)
			for _, cat := range []gpu.Category{gpu.CatParams, gpu.CatGrads, gpu.CatOptState, gpu.CatActivations, gpu.CatLoRA} {
				require.Equal(t, after[cat.String()]-before[cat.String()], plan.Get(cat), "category %s", cat)
			}
			scratch := after[gpu.CatScratch.String()] - before[gpu.CatScratch.String()]
			require.LessOrEqual(t, plan.Scratch, scratch)
			t.Logf("scratch: plan %d bytes, ledger %d bytes", plan.Scratch, scratch)
		})
	}
}
