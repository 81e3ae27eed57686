package nn

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParamSpecsCountMatchesConfig(t *testing.T) {
	c, _ := Preset("small")
	total := 0
	seen := map[string]bool{}
	for _, p := range c.ParamSpecs() {
		require.Falsef(t, seen[p.Name], "duplicate name %s", p.Name)
		seen[p.Name] = true
		total += p.Numel()
		require.Equal(t, len(p.Shape) == 2, p.Decay, "%s: decay on matrices only", p.Name)
	}
	require.Equal(t, c.Params(), total)
	require.True(t, seen["layers.5.attn.wq"])
	require.True(t, seen["lm_head"])
}

func TestInitTensor(t *testing.T) {
	c, _ := Preset("tiny")
	specs := c.LayerSpecs(0)
	gain := InitTensor(specs[0], 1)
	require.Equal(t, float32(1), gain[0])
	wq := InitTensor(specs[1], 1)
	require.Equal(t, wq, InitTensor(specs[1], 1), "deterministic")
	require.NotEqual(t, wq, InitTensor(specs[2], 1), "independent streams per name")
	require.NotEqual(t, wq, InitTensor(specs[1], 2), "seed matters")
	var s float64
	for _, v := range wq {
		s += float64(v) * float64(v)
	}
	std := math.Sqrt(s / float64(len(wq)))
	require.InDelta(t, InitStd, std, 0.002)
	wo := InitTensor(specs[4], 1)
	s = 0
	for _, v := range wo {
		s += float64(v) * float64(v)
	}
	require.InDelta(t, InitStd/math.Sqrt(2*float64(c.L)), math.Sqrt(s/float64(len(wo))), 0.001)
}
