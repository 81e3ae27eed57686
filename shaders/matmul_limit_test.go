package shaders

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/stretchr/testify/require"
)

// TestMatmulTexSize checks the packing textures' rounding: heights powers
// of two, widths never, also where the rounding meets the device limit.
func TestMatmulTexSize(t *testing.T) {
	const lim = 8192
	for _, c := range []struct{ w, h, wantW, wantH int }{
		{1, 1, 64 + matmulTexPadX, 64},
		{65, 65, 128 + matmulTexPadX, 128},
		{4096, 4096, 4096 + matmulTexPadX, 4096},
		{4097, 8192, lim - matmulTexPadX, 8192},
		{lim - matmulTexPadX, 5000, lim - matmulTexPadX, 8192},
	} {
		w, h := matmulTexSize(c.w, c.h, lim)
		require.Equal(t, [2]int{c.wantW, c.wantH}, [2]int{w, h}, "%dx%d", c.w, c.h)
	}
}

// TestMatmulAtTextureLimit runs products with one side far past the
// texture limit (a vocabulary-sized N, as the LM head has) on every texture
// path against the reference, and checks that every packing texture stayed
// within the limit and kept its kind of size: widths never a power of two,
// heights always one (a width rounded to the limit itself would be one, and
// llvmpipe recompiles the kernel for it: 3.3 s against 0.24 s measured).
func TestMatmulAtTextureLimit(t *testing.T) {
	d := gputest.Device(t)
	lim := int(d.Limits.MaxTextureDimension2D)
	rng := rand.New(rand.NewPCG(31, 32))
	M, N, K := 8, 4*lim+97, 64
	a, b := randVec(rng, M*K, 1), randVec(rng, K*N, 1)
	for _, path := range matmulTexPaths(d) {
		for _, layout := range matmulLayouts {
			got := matmulRun(t, d, path, a, b, nil, M, N, K, layout, false)
			tol.Check(t, fmt.Sprintf("%v/%v", path, layout), got, matmulWant(a, b, nil, M, N, K, layout, false), matmulTol(K))
		}
	}
	s := matmulStateOf(d)
	require.NotEmpty(t, s.tex)
	for key := range s.tex {
		require.LessOrEqual(t, int(key.w), lim-matmulTexPadX, "%+v", key)
		require.LessOrEqual(t, int(key.h), lim, "%+v", key)
		require.NotEqual(t, 1, bits.OnesCount32(key.w), "%+v: a power-of-two width", key)
		require.Equal(t, 1, bits.OnesCount32(key.h), "%+v: a height not a power of two", key)
	}

	// The plan keeps op(B)'s texture width within lim - matmulTexPadX for
	// a width that would just reach the limit.
	n := 4 * lim
	op, err := newMatmulOp(&gpu.Buffer{Size: uint64(4 * M * n)}, &gpu.Buffer{Size: uint64(4 * M * K)},
		&gpu.Buffer{Size: uint64(4 * K * n)}, M, n, K, NN, false)
	require.NoError(t, err)
	const tnWG = 4 * matmulTexTN4 * matmulTexWX
	size, err := op.plan(d, matmulTexTM*matmulTexWY, tnWG, 1, func(bm, bn, bk int) int {
		if roundUp(bn, tnWG)/4 > lim-matmulTexPadX {
			return 1
		}
		return -1
	})
	require.NoError(t, err)
	require.LessOrEqual(t, roundUp(size.bn, tnWG)/4, lim-matmulTexPadX)
}

// TestMatmulPlanBudgets checks the work per dispatch each path plans for a
// 1024^3 product: the simple kernel one submit budget, the texture kernels
// matmulTexBudgets of them (several on a CPU adapter, where one budget is
// sized for kernels 20x slower).
func TestMatmulPlanBudgets(t *testing.T) {
	d := gputest.Device(t)
	const n = 1024
	buf := func() *gpu.Buffer { return &gpu.Buffer{Size: 4 * n * n} }
	op, err := newMatmulOp(buf(), buf(), buf(), n, n, n, NN, false)
	require.NoError(t, err)
	flops := func(b matmulBlock) float64 { return 2 * float64(b.bm) * float64(b.bn) * float64(b.bk) }
	simple, err := op.plan(d, matmulTile, matmulTile, 1, nil)
	require.NoError(t, err)
	require.LessOrEqual(t, flops(simple), d.SubmitBudget)
	tex, err := op.plan(d, matmulTexTM, 4*matmulTexTN4*matmulTexWX, matmulTexBudgets(d), nil)
	require.NoError(t, err)
	require.LessOrEqual(t, flops(tex), d.SubmitBudget*matmulTexBudgets(d))
	if d.IsCPU() {
		require.Greater(t, flops(tex), d.SubmitBudget, "a CPU adapter's texture kernels take several budgets")
		require.Equal(t, matmulBlock{bm: n, bn: n, bk: n}, tex, "1024^3 (2.1 GFLOP) in one dispatch")
	}
}
