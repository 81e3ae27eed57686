package cli

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShareOf checks the share arithmetic: the step's rate over the mean
// rate of the matmuls, and an error when either side is missing.
func TestShareOf(t *testing.T) {
	m, err := shareOf([]Measurement{{Op: "matmul_NN", GFLOPS: 20}, {Op: "train_step", Shape: "s", GFLOPS: 15},
		{Op: "matmul_NT", GFLOPS: 30}})
	require.NoError(t, err)
	require.Equal(t, "train_step_share", m.Op)
	require.InDelta(t, 0.6, m.Share, 1e-12)
	require.Contains(t, m.Note, "60%")
	_, err = shareOf([]Measurement{{Op: "matmul_NN", GFLOPS: 20}})
	require.Error(t, err)
	_, err = shareOf([]Measurement{{Op: "train_step", GFLOPS: 20}})
	require.Error(t, err)
}

// TestBenchShare runs `bench --op share` on the tiny preset and checks that
// it measures the model-shape matmuls on both sides of one training step and
// that the share it prints follows from the lines before it.
func TestBenchShare(t *testing.T) {
	out, errOut, code := runBin(t, nil, "bench", "--preset", "tiny", "--op", "share", "--reps", "1", "--json")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	var ms []Measurement
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m Measurement
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		ms = append(ms, m)
	}
	require.Len(t, ms, 6+1+6+1, "6 matmuls, the step, the matmuls again, the share")
	require.Equal(t, "train_step", ms[6].Op)
	last := ms[len(ms)-1]
	require.Equal(t, "train_step_share", last.Op)
	want, err := shareOf(ms[:len(ms)-1])
	require.NoError(t, err)
	require.InDelta(t, want.Share, last.Share, 1e-9)
	require.Greater(t, last.Share, 0.0)
}
