package gpu

import (
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/stretchr/testify/require"
)

func TestLedgerPeaks(t *testing.T) {
	var l Ledger
	l.add(CatParams, 100)
	l.add(CatGrads, 50)
	l.sub(CatGrads, 50)
	l.add(CatActivations, 30)
	require.Equal(t, uint64(130), l.Total())
	require.Equal(t, uint64(150), l.TotalPeak(), "total peak is the high-water of the sum, not the sum of peaks")
	require.Equal(t, uint64(50), l.Peak(CatGrads))
	require.Equal(t, uint64(0), l.Current(CatGrads))
	l.ResetPeak()
	require.Equal(t, uint64(130), l.TotalPeak())
	require.Equal(t, uint64(0), l.Peak(CatGrads))
	s := l.Snapshot()
	require.Equal(t, uint64(100), s.Current["params"])
	require.Panics(t, func() { l.sub(CatLoRA, 1) }, "freeing more than was allocated is a programmer error")
}

func TestFoldGrid(t *testing.T) {
	for _, tc := range []struct{ groups, max uint32 }{{1, 65535}, {65535, 65535}, {65536, 65535}, {200000, 65535}, {7, 3}, {10, 3}} {
		g := FoldGrid(tc.groups, tc.max)
		require.LessOrEqual(t, g.X, tc.max)
		require.GreaterOrEqual(t, uint64(g.X)*uint64(g.Y), uint64(tc.groups), "fold must cover every workgroup")
		require.Less(t, uint64(g.X)*uint64(g.Y-1), uint64(tc.groups), "fold must not add a whole idle row")
	}
}

func TestExpand(t *testing.T) {
	out, err := Expand("a {{WG}} b {{N}}", map[string]string{"WG": "64", "N": "3"})
	require.NoError(t, err)
	require.Equal(t, "a 64 b 3", out)
	_, err = Expand("x {{MISSING}}", map[string]string{"WG": "1"})
	require.ErrorContains(t, err, "MISSING")
}

func TestChoose(t *testing.T) {
	infos := []AdapterInfo{
		{Name: "llvmpipe (LLVM 15)", Type: "cpu", adapterType: wgpu.AdapterTypeCPU},
		{Name: "Intel Iris Xe", Type: "integrated-gpu", adapterType: wgpu.AdapterTypeIntegratedGPU},
		{Name: "NVIDIA H100", Type: "discrete-gpu", adapterType: wgpu.AdapterTypeDiscreteGPU},
	}
	i, _, err := Choose(infos, "")
	require.NoError(t, err)
	require.Equal(t, 2, i, "discrete GPU first")
	i, _, err = Choose(infos[:2], "")
	require.NoError(t, err)
	require.Equal(t, 1, i, "then integrated")
	i, _, err = Choose(infos, "llvm")
	require.NoError(t, err)
	require.Equal(t, 0, i, "name substring override")
	i, _, err = Choose(infos, "1")
	require.NoError(t, err)
	require.Equal(t, 1, i, "index override")
	_, _, err = Choose(infos, "9")
	require.ErrorContains(t, err, "out of range")
	_, _, err = Choose(infos, "radeon")
	require.ErrorContains(t, err, "radeon")
	_, _, err = Choose(nil, "")
	require.ErrorIs(t, err, ErrNoAdapter)
}

func TestCheckLimits(t *testing.T) {
	l := wgpu.Limits{MaxStorageBuffersPerShaderStage: 4}
	require.ErrorContains(t, CheckLimits(l), "maxStorageBuffersPerShaderStage")
}

func TestParams(t *testing.T) {
	b := Params(uint32(1), float32(2), -1)
	require.Len(t, b, 16)
	require.Equal(t, []byte{1, 0, 0, 0}, b[:4])
	require.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, b[8:12])
	require.Len(t, Params(1, 2, 3, 4, 5), 32)
}
