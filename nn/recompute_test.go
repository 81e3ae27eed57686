package nn

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/shaders"
)

// TestRecomputeIsExact checks that recomputing block activations in the
// backward (Layout.Recompute) gives bit-identical losses and gradients to
// saving them, for a vanilla and a staged layout, while the ledger's
// activations shrink to one input per block plus one shared set.
func TestRecomputeIsExact(t *testing.T) {
	d := gputest.Device(t)
	cfg := stagedConfig
	for _, lo := range []Layout{
		{},
		{Frozen: []bool{true, false, true}, R: 3, Alpha: 6, Format: shaders.Half},
	} {
		t.Run(lo.Format.String()+map[bool]string{true: "_staged", false: "_vanilla"}[lo.FrozenCount() > 0], func(t *testing.T) {
			build := func(recompute bool) (*Model, uint64) {
				l := lo
				l.Recompute = recompute
				before := d.Ledger.Current(gpu.CatActivations)
				m, err := NewStagedModel(d, cfg, l, 7)
				require.NoError(t, err)
				randomise(t, m, 3)
				return m, d.Ledger.Current(gpu.CatActivations) - before
			}
			saved, savedActs := build(false)
			defer saved.Release()
			rec, recActs := build(true)
			defer rec.Release()
			t.Logf("activations: %d bytes saved, %d with recompute", savedActs, recActs)
			require.Less(t, recActs, savedActs)

			tokens, targets := testBatch(cfg, 8)
			sl, sloss := runBackward(t, saved, tokens, targets)
			rl, rloss := runBackward(t, rec, tokens, targets)
			require.Equal(t, sloss, rloss)
			require.Equal(t, sl, rl)
			for _, s := range saved.Specs() {
				want, err := saved.ReadGrad(s.Name)
				require.NoError(t, err)
				got, err := rec.ReadGrad(s.Name)
				require.NoError(t, err)
				require.Equal(t, want, got, "gradient of %s", s.Name)
			}
		})
	}
}
