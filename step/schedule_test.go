package step

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScheduleShape(t *testing.T) {
	s := Schedule{MaxLR: 1e-3, MinLR: 1e-4, Warmup: 10, Steps: 110}
	require.NoError(t, s.Validate())
	require.InDelta(t, 1e-4, s.LR(1), 1e-12)
	require.InDelta(t, 1e-3, s.LR(10), 1e-12)
	require.InDelta(t, 5.5e-4, s.LR(60), 1e-12, "halfway through the decay is the midpoint")
	require.InDelta(t, 1e-4, s.LR(110), 1e-12)
	require.InDelta(t, 1e-4, s.LR(500), 1e-12)
	for i := 11; i < 110; i++ {
		require.LessOrEqual(t, s.LR(i+1), s.LR(i), "monotone after warmup")
	}
}

func TestScheduleValidate(t *testing.T) {
	require.ErrorContains(t, Schedule{MaxLR: 1, Steps: 0}.Validate(), "steps")
	require.ErrorContains(t, Schedule{MaxLR: 1, Steps: 5, Warmup: 6}.Validate(), "warmup")
	require.ErrorContains(t, Schedule{MaxLR: 0, Steps: 5}.Validate(), "max learning rate")
	require.ErrorContains(t, Schedule{MaxLR: 1, MinLR: 2, Steps: 5}.Validate(), "min learning rate")
}
