package step

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/nn"
	"github.com/step-gpu/step-gpu/shaders"
)

var growConfig = nn.Config{V: 31, C: 8, L: 4, NH: 2, H: 12, T: 5, B: 2, RoPE: 10000, NormEps: 1e-5}

// growWeights gives every tensor of cfg distinct values that encode its
// layer, so the tests can tell where each block came from.
func growWeights(cfg nn.Config) map[string][]float32 {
	w := map[string][]float32{}
	for _, s := range cfg.ParamSpecs() {
		v := make([]float32, s.Numel())
		for i := range v {
			v[i] = float32(100*(s.Layer+1)) + float32(i)/1000
		}
		w[s.Name] = v
	}
	return w
}

// TestGrowNameMap checks the old-to-new name map and the new-block flags
// for every position.
func TestGrowNameMap(t *testing.T) {
	for _, c := range []struct {
		L, added int
		pos      string
		renames  map[int]int // old block -> new block
	}{
		{4, 2, PosUpper, map[int]int{0: 0, 1: 1, 2: 2, 3: 3}},
		{4, 3, PosIntermediate, map[int]int{0: 0, 1: 2, 2: 4, 3: 6}},
		{4, 1, PosIntermediate, map[int]int{0: 0, 1: 1, 2: 3, 3: 4}}, // one block: the middle gap
		{2, 5, PosIntermediate, map[int]int{0: 0, 1: 6}},             // more blocks than gaps: all in the one gap
		{3, 5, PosIntermediate, map[int]int{0: 0, 1: 3, 2: 7}},       // 2 gaps, 5 blocks: 2 and 3
		{1, 2, PosIntermediate, map[int]int{0: 0}},                   // no gap: above
		{4, 2, PosLower, map[int]int{0: 2, 1: 3, 2: 4, 3: 5}},
	} {
		t.Run(fmt.Sprintf("%s_L%d_add%d", c.pos, c.L, c.added), func(t *testing.T) {
			cfg := growConfig
			cfg.L = c.L
			g, err := Grow(cfg, growWeights(cfg), Growth{Operator: OpMean, Position: c.pos, Added: c.added})
			require.NoError(t, err)
			require.Equal(t, c.L+c.added, g.Config.L)
			want := map[string]string{}
			isNew := make([]bool, g.Config.L)
			for i := range isNew {
				isNew[i] = true
			}
			for o, n := range c.renames {
				want[fmt.Sprintf("layers.%d.", o)] = fmt.Sprintf("layers.%d.", n)
				isNew[n] = false
				// The old block's tensors are under its new name, unchanged.
				require.Equal(t, growWeights(cfg)[nn.LayerNames(o)[1]], g.Weights[nn.LayerNames(n)[1]])
			}
			require.Equal(t, want, g.Renames)
			require.Equal(t, isNew, g.New)
			require.Len(t, g.Weights, len(g.Config.ParamSpecs()))
		})
	}
}

// TestGrowRandomIsSeeded checks that random positions depend on the seed
// only and add the right number of blocks.
func TestGrowRandomIsSeeded(t *testing.T) {
	cfg := growConfig
	w := growWeights(cfg)
	a, err := Grow(cfg, w, Growth{Operator: OpCopy, Position: PosRandom, Added: 5, Seed: 3})
	require.NoError(t, err)
	b, err := Grow(cfg, w, Growth{Operator: OpCopy, Position: PosRandom, Added: 5, Seed: 3})
	require.NoError(t, err)
	require.Equal(t, a.New, b.New)
	require.Equal(t, a.Renames, b.Renames)
	differs := false
	for seed := uint64(4); seed < 12 && !differs; seed++ {
		c, err := Grow(cfg, w, Growth{Operator: OpCopy, Position: PosRandom, Added: 5, Seed: seed})
		require.NoError(t, err)
		differs = fmt.Sprint(c.New) != fmt.Sprint(a.New)
	}
	require.True(t, differs, "random positions ignore the seed")
	n := 0
	for _, x := range a.New {
		if x {
			n++
		}
	}
	require.Equal(t, 5, n)
}

// TestGrowOperators checks each operator's values.
func TestGrowOperators(t *testing.T) {
	cfg := growConfig
	w := growWeights(cfg)
	wq := func(l int) string { return nn.LayerNames(l)[1] }

	// mean, intermediate, 3 blocks into 3 gaps: new block 1 = mean(0, 1).
	g, err := Grow(cfg, w, Growth{Operator: OpMean, Position: PosIntermediate, Added: 3})
	require.NoError(t, err)
	for j, x := range g.Weights[wq(1)] {
		require.InDelta(t, (w[wq(0)][j]+w[wq(1)][j])/2, x, 1e-4)
	}
	require.Equal(t, "mean(0,1)", g.Sources[1])
	// mean, upper: a copy of the top block.
	g, err = Grow(cfg, w, Growth{Operator: OpMean, Position: PosUpper, Added: 1})
	require.NoError(t, err)
	require.Equal(t, w[wq(3)], g.Weights[wq(4)])
	// copy, lower: a copy of the bottom block (there is none below).
	g, err = Grow(cfg, w, Growth{Operator: OpCopy, Position: PosLower, Added: 2})
	require.NoError(t, err)
	require.Equal(t, w[wq(0)], g.Weights[wq(0)])
	require.Equal(t, w[wq(0)], g.Weights[wq(1)])
	// copy, intermediate: the block below.
	g, err = Grow(cfg, w, Growth{Operator: OpCopy, Position: PosIntermediate, Added: 3})
	require.NoError(t, err)
	require.Equal(t, w[wq(2)], g.Weights[wq(5)])
	// stack: copies of blocks 0, 1, 2, 3, 0 on top, bottom first.
	g, err = Grow(cfg, w, Growth{Operator: OpStack, Position: PosIntermediate, Added: 5})
	require.NoError(t, err)
	for i, src := range []int{0, 1, 2, 3, 0} {
		require.Equal(t, w[wq(src)], g.Weights[wq(4+i)], "stacked block %d", 4+i)
	}
	// identity: fresh weights, output projections zero.
	g, err = Grow(cfg, w, Growth{Operator: OpIdentity, Position: PosUpper, Added: 1, Seed: 9})
	require.NoError(t, err)
	names := nn.LayerNames(4)
	for _, n := range names {
		v := g.Weights[n]
		zero := true
		for _, x := range v {
			zero = zero && x == 0
		}
		isOut := n == names[4] || n == names[8]
		require.Equal(t, isOut, zero, "identity block tensor %s", n)
	}
	// The input is untouched and shares nothing with the output.
	g.Weights[wq(0)][0] = -1
	require.Equal(t, growWeights(cfg)[wq(0)], w[wq(0)])
}

// TestGrowRejects checks the errors.
func TestGrowRejects(t *testing.T) {
	cfg := growConfig
	w := growWeights(cfg)
	for _, c := range []struct {
		g    Growth
		want string
	}{
		{Growth{Operator: "splice", Position: PosUpper, Added: 1}, `unknown growth operator "splice"`},
		{Growth{Operator: OpMean, Position: "middle", Added: 1}, `unknown growth position "middle"`},
		{Growth{Operator: OpMean, Position: PosUpper}, "at least 1 layer"},
	} {
		_, err := Grow(cfg, w, c.g)
		require.ErrorContains(t, err, c.want)
	}
	delete(w, "layers.2.mlp.w3")
	_, err := Grow(cfg, w, Growth{Operator: OpMean, Position: PosUpper, Added: 1})
	require.ErrorContains(t, err, "layers.2.mlp.w3")
}

// identityLossTol bounds the loss change of an identity growth with f32
// frozen weights: the function is the same, only the kernels differ (the
// LoRA linear instead of the plain matmul), so fp32 rounding alone (~1e-6).
const identityLossTol = 1e-5

// TestIdentityGrowthKeepsLoss grows a trained-looking model with the
// identity operator on the GPU (merge, download, grow, freeze, fresh
// adapters) and checks that the loss on a batch is unchanged; with half
// frozen weights it reports the change rounding makes.
func TestIdentityGrowthKeepsLoss(t *testing.T) {
	d := gputest.Device(t)
	cfg := growConfig
	batchLoss := func(m *nn.Model, tokens, targets []uint32) float64 {
		r := d.NewRecorder()
		require.NoError(t, m.SetBatch(r, tokens, targets))
		require.NoError(t, m.Forward(r))
		require.NoError(t, m.Head(r, false, 0))
		require.NoError(t, m.LossSum(r, 1/float32(len(tokens))))
		require.NoError(t, r.Flush())
		l, err := m.ReadLoss()
		require.NoError(t, err)
		return float64(l)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	tokens, targets := make([]uint32, cfg.B*cfg.T), make([]uint32, cfg.B*cfg.T)
	for i := range tokens {
		tokens[i], targets[i] = uint32(rng.IntN(cfg.V)), uint32(rng.IntN(cfg.V))
	}
	for _, c := range []struct {
		pos string
		wf  shaders.WeightFormat
		tol float64
	}{
		{PosUpper, shaders.F32, identityLossTol},
		{PosIntermediate, shaders.F32, identityLossTol},
		{PosLower, shaders.F32, identityLossTol},
		// Half weights round each weight by up to 2^-11 relative: the loss
		// moves by ~1e-4 here; 1e-2 still catches a wrong growth (~0.1-1).
		{PosUpper, shaders.Half, 1e-2},
	} {
		t.Run(c.pos+"_"+c.wf.String(), func(t *testing.T) {
			// A stage-2 model with adapters that have moved (B != 0), so the
			// merge matters.
			lo := nn.Layout{Frozen: []bool{true, true, false, false}, R: 2, Alpha: 4, Format: c.wf}
			m, err := nn.NewStagedModel(d, cfg, lo, 5)
			require.NoError(t, err)
			for _, s := range m.Specs() {
				v := make([]float32, s.Numel())
				for i := range v {
					v[i] = float32(rng.NormFloat64() * 0.3)
				}
				require.NoError(t, m.WriteParam(s.Name, v))
			}
			before := batchLoss(m, tokens, targets)
			nm, grown, err := GrowModel(d, m, Growth{Operator: OpIdentity, Position: c.pos, Added: 3, Seed: 1},
				nn.Layout{R: 3, Alpha: 3, Format: c.wf}, 6)
			require.NoError(t, err)
			defer nm.Release()
			require.Equal(t, 7, nm.Cfg.L)
			require.Equal(t, 4, nm.Layout().FrozenCount())
			after := batchLoss(nm, tokens, targets)
			t.Logf("%s %s: loss %.7f before, %.7f after growth (%.2e)", c.pos, c.wf, before, after, math.Abs(after-before))
			require.InDelta(t, before, after, c.tol)
			require.NotEmpty(t, grown.RenameTable())
		})
	}
}
