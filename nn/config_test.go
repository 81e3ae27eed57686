package nn

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPresetsValid(t *testing.T) {
	for _, name := range PresetNames() {
		c, err := Preset(name)
		require.NoError(t, err)
		require.NoErrorf(t, c.Validate(), "preset %s", name)
	}
	_, err := Preset("huge")
	require.ErrorContains(t, err, "tiny")
}

// TestParams368M checks the STEP paper's 368M config (STEP.md: 368.0M).
func TestParams368M(t *testing.T) {
	c, err := Preset("368m")
	require.NoError(t, err)
	require.InDelta(t, 368.0e6, float64(c.Params()), 0.05e6)
}

func TestValidateRejects(t *testing.T) {
	c, _ := Preset("tiny")
	bad := c
	bad.NH = 3
	require.ErrorContains(t, bad.Validate(), "does not divide")
	bad = c
	bad.C = -4
	require.ErrorContains(t, bad.Validate(), "d_model")
	bad = c
	bad.NormEps = 0
	require.ErrorContains(t, bad.Validate(), "norm_eps")
}
