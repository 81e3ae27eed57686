package shaders

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

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
	// 4*lim columns would fill op(B)'s texture exactly, one texture
	// line past its widest allowed width; 4*lim+97 splits unevenly.
	M, K := 8, 64
	for _, N := range []int{4 * lim, 4*lim + 97} {
		a, b := randVec(rng, M*K, 1), randVec(rng, K*N, 1)
		for _, path := range matmulTexPaths(d) {
			for _, layout := range matmulLayouts {
				got := matmulRun(t, d, path, a, b, nil, M, N, K, layout, false)
				tol.Check(t, fmt.Sprintf("N=%d/%v/%v", N, path, layout), got, matmulWant(a, b, nil, M, N, K, layout, false), matmulTol(K))
			}
		}
	}
	s := matmulStateOf(d)
	require.NotEmpty(t, s.tex)
	for key := range s.tex {
		if !slices.Contains([]string{"a", "at", "b", "bt"}, key.role) {
			continue // attention's textures (attnRowsTexture)
		}
		require.LessOrEqual(t, int(key.w), lim-matmulTexPadX, "%+v", key)
		require.LessOrEqual(t, int(key.h), lim, "%+v", key)
		require.NotEqual(t, 1, bits.OnesCount32(key.w), "%+v: a power-of-two width", key)
		require.Equal(t, 1, bits.OnesCount32(key.h), "%+v: a height not a power of two", key)
	}
}

// TestMatmulPlanBudgets checks the work per dispatch each path records for
// a 1024^3 product (2.1 GFLOP): the simple kernel within one submit budget,
// the texture kernels within matmulTexBudgets of them, which on a CPU
// adapter (1.5 GFLOP budgets) puts the whole product in one dispatch.
func TestMatmulPlanBudgets(t *testing.T) {
	d := gputest.Device(t)
	const n = 1024
	a, b := gputest.Upload(t, d, "a", make([]float32, n*n)), gputest.Upload(t, d, "b", make([]float32, n*n))
	out := gputest.Output(t, d, "out", n*n, 0)
	dispatches := func(p MatmulPath) int {
		matmulPin(t, d, p)
		r := d.NewRecorder()
		require.NoError(t, Matmul(r, out, a, b, n, n, n, NN, false))
		require.NoError(t, r.Flush())
		return r.Dispatches
	}
	const work = 2.0 * n * n * n
	require.GreaterOrEqual(t, dispatches(MatmulSimple), int(math.Ceil(work/d.SubmitBudget)))
	// 1024-float rows are copied into the textures: only the tiled kernel
	// dispatches.
	tex := dispatches(MatmulTexture)
	require.GreaterOrEqual(t, tex, int(math.Ceil(work/(d.SubmitBudget*matmulTexBudgets(d)))))
	if d.IsCPU() {
		require.Equal(t, 1, tex, "a CPU adapter's texture kernels take 1024^3 in one dispatch")
	}
}
