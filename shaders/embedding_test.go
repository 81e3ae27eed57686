package shaders

import (
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/stretchr/testify/require"
)

// embeddingCopyTol: the forward copies float32 values, so it is exact.
var embeddingCopyTol = tol.Tol{}

// embeddingSumTol: the backward adds at most 17 dout rows of values in
// [-1, 1] to an initial value in [-1, 1], in the reference's order; each
// fp32 add rounds by at most 2^-24 times a partial sum of at most 18, so
// the error stays below 17 * 18 * 6e-8 = 1.8e-5.
var embeddingSumTol = tol.Tol{Atol: 2e-5, Rtol: 0}

// embeddingHostile are the hostile shapes of the family: vocabulary sizes
// 1, 2, primes and a non-multiple of the workgroup size, rows and columns
// 1, small primes and a multiple of the backward workgroup.
var (
	embeddingVs = []int{1, 2, 5, 97, 1000, 4099}
	embeddingNs = []int{1, 3, 17}
	embeddingCs = []int{1, 3, 7, 64}
)

// embeddingTokens returns N random tokens below V, with repeats.
func embeddingTokens(rng *rand.Rand, N, V int) []uint32 {
	out := make([]uint32, N)
	for i := range out {
		out[i] = uint32(rng.IntN(V))
	}
	return out
}

// embeddingForwardCase runs the forward on GPU and compares it with the
// reference, with the output pre-filled so a missed row shows.
func embeddingForwardCase(t *testing.T, d *gpu.Device, tokens []uint32, wte []float32, N, C, V int) {
	t.Helper()
	out := gputest.Output(t, d, "out", N*C, 7)
	gt := gputest.UploadU32(t, d, "tokens", tokens)
	gw := gputest.Upload(t, d, "wte", wte)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return EmbeddingForward(r, out, gt, gw, N, C, V) })
	tol.Check(t, "embedding forward", gputest.Read(t, out, N*C), ref.EmbeddingForward(tokens, tol.F64(wte), N, C, V), embeddingCopyTol)
	gputest.CheckPadding(t, out, N*C)
}

// embeddingBackwardCase runs the backward on GPU onto a random initial
// dwte and compares it with the reference.
func embeddingBackwardCase(t *testing.T, d *gpu.Device, tokens []uint32, dwte0, dout []float32, N, C, V int, tl tol.Tol) {
	t.Helper()
	offsets, positions, err := BuildTokenIndex(tokens, V)
	require.NoError(t, err)
	gd := gputest.Output(t, d, "dwte", V*C, 0)
	require.NoError(t, gd.WriteF32(0, dwte0))
	gdo := gputest.Upload(t, d, "dout", dout)
	goff := gputest.UploadU32(t, d, "offsets", offsets)
	gp := gputest.UploadU32(t, d, "positions", positions)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return EmbeddingBackward(r, gd, gdo, goff, gp, N, C, V) })
	want := tol.F64(dwte0)
	ref.EmbeddingBackward(want, tol.F64(dout), tokens, N, C, V)
	tol.Check(t, "embedding backward", gputest.Read(t, gd, V*C), want, tl)
	gputest.CheckPadding(t, gd, V*C)
}

func TestEmbeddingForward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(31, 32))
	for _, V := range embeddingVs {
		for _, N := range embeddingNs {
			for _, C := range embeddingCs {
				tokens := embeddingTokens(rng, N, V)
				embeddingForwardCase(t, d, tokens, randVec(rng, V*C, 1), N, C, V)
			}
		}
	}
}

// TestEmbeddingForwardOutOfRange checks that tokens >= V give zero rows and
// write nothing out of bounds.
func TestEmbeddingForwardOutOfRange(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(33, 34))
	const C, V = 7, 5
	tokens := []uint32{4, V, 0, 0xFFFFFFFF, V + 1000, 2}
	embeddingForwardCase(t, d, tokens, randVec(rng, V*C, 1), len(tokens), C, V)
}

func TestEmbeddingBackward(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(35, 36))
	for _, V := range embeddingVs {
		for _, N := range embeddingNs {
			for _, C := range embeddingCs {
				tokens := embeddingTokens(rng, N, min(V, 3)) // few distinct tokens: lists of several rows
				if N > 1 {
					tokens[N-1] = uint32(V - 1)
				}
				embeddingBackwardCase(t, d, tokens, randVec(rng, V*C, 1), randVec(rng, N*C, 1), N, C, V, embeddingSumTol)
			}
		}
	}
}

// embeddingExactTol: the long-list test uses multiples of 1/64 of magnitude
// at most 1 whose partial sums (|s| <= 70,001) need at most 17+6 bits, so
// every fp32 sum is exact.
var embeddingExactTol = tol.Tol{}

// TestEmbeddingBackwardLongList has one token appear 69,000 times, so one
// invocation would cross lavapipe's 65,535 loop iterations if it summed
// the whole list in one dispatch.
func TestEmbeddingBackwardLongList(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(37, 38))
	const N, C, V = 70000, 3, 5
	tokens := make([]uint32, N)
	for i := range tokens {
		tokens[i] = 2
		if i%70 == 0 {
			tokens[i] = uint32(rng.IntN(V))
		}
	}
	q := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.IntN(129)-64) / 64
		}
		return out
	}
	embeddingBackwardCase(t, d, tokens, q(V*C), q(N*C), N, C, V, embeddingExactTol)
}

// TestEmbeddingWindows shrinks the binding limit so that wte and dwte are
// bound as several windows of vocabulary rows at misaligned row offsets.
func TestEmbeddingWindows(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(39, 40))
	old := embeddingMaxBind
	embeddingMaxBind = 1024 // 27 to 36 rows of C=7 per window, by the device's alignment
	t.Cleanup(func() { embeddingMaxBind = old })
	const N, C, V = 17, 7, 97
	per := (1024 - (int(d.Limits.MinStorageBufferOffsetAlignment) - 4)) / (4 * C)
	tokens := embeddingTokens(rng, N, V)
	tokens[0], tokens[1], tokens[2] = 0, V-1, V+3
	embeddingForwardCase(t, d, tokens, randVec(rng, V*C, 1), N, C, V)
	tokens[2] = uint32(per - 1) // last row of the first window
	embeddingBackwardCase(t, d, tokens, randVec(rng, V*C, 1), randVec(rng, N*C, 1), N, C, V, embeddingSumTol)

	wte := gputest.Upload(t, d, "wte", randVec(rng, V*C, 1))
	wins, err := embeddingRowWindows(d, wte, "wte", V, C)
	require.NoError(t, err)
	require.Len(t, wins, (V+per-1)/per)
	require.Greater(t, len(wins), 2)
	embeddingMaxBind = 16 // less than one alignment unit
	_, err = embeddingRowWindows(d, wte, "wte", V, C)
	require.ErrorContains(t, err, "exceeds the device's maxStorageBufferBindingSize")
}

func TestBuildTokenIndex(t *testing.T) {
	offsets, positions, err := BuildTokenIndex([]uint32{3, 0, 3, 1, 3}, 5)
	require.NoError(t, err)
	require.Equal(t, []uint32{0, 1, 2, 2, 5, 5}, offsets)
	require.Equal(t, []uint32{1, 3, 0, 2, 4}, positions)
	_, _, err = BuildTokenIndex([]uint32{1, 5, 2}, 5)
	require.ErrorContains(t, err, "token 5 at position 1")
}

// TestEmbeddingErrors checks that wrong sizes are errors naming the buffer,
// never dispatches that the device would clamp silently.
func TestEmbeddingErrors(t *testing.T) {
	d := gputest.Device(t)
	const N, C, V = 5, 3, 7
	small := gputest.Upload(t, d, "small", make([]float32, 4)) // fewer than N*C and V*C
	tokens := gputest.UploadU32(t, d, "tokens", make([]uint32, N))
	wte := gputest.Upload(t, d, "wte", make([]float32, V*C))
	r := d.NewRecorder()
	require.ErrorContains(t, EmbeddingForward(r, small, tokens, wte, N, C, V), "small")
	require.ErrorContains(t, EmbeddingForward(r, wte, tokens, small, N, C, V), "small")
	require.ErrorContains(t, EmbeddingForward(r, wte, tokens, wte, N, 0, V), "invalid sizes")
	require.ErrorContains(t, EmbeddingBackward(r, wte, small, tokens, tokens, N, C, V), "small")
	require.NoError(t, r.Flush())
}

// TestEmbeddingBackwardFoldedGrid has more vocabulary rows than one grid
// dimension holds, so the backward's grid folds into two dimensions.
func TestEmbeddingBackwardFoldedGrid(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(57, 58))
	V := int(d.Limits.MaxComputeWorkgroupsPerDimension) + 2
	const N, C = 17, 1
	tokens := embeddingTokens(rng, N, V)
	tokens[0], tokens[1] = uint32(V-1), uint32(V-2)
	embeddingBackwardCase(t, d, tokens, randVec(rng, V*C, 1), randVec(rng, N*C, 1), N, C, V, embeddingSumTol)
}
