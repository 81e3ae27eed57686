package shaders

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/stretchr/testify/require"
)

// TestMatmulCopiedOperands checks the texture path where operands are
// copied into their textures instead of packed: op(B) rows (NN, TN), op(B)
// columns (NT, tiled_sa_bt) and op(A) columns (TN, tiled_at). Each layout
// first runs a product with NaN operands and twice the columns, which
// leaves NaN in the texels the copied product does not write (its column
// padding, which the kernel reads for columns it does not store), then the
// product itself, with copies and with the pack kernel, against the
// reference. The dispatch counts show which path ran: with copies only the
// product's kernel dispatches. Every texture path the device has is checked.
func TestMatmulCopiedOperands(t *testing.T) {
	d := gputest.Device(t)
	for _, path := range matmulTexPaths(d) {
		matmulPin(t, d, path)
		matmulCheckCopies(t, d)
	}
}

// matmulCheckCopies runs TestMatmulCopiedOperands's products on d's path.
func matmulCheckCopies(t *testing.T, d *gpu.Device) {
	rng := rand.New(rand.NewPCG(21, 22))
	const M, N, K = 64, 64, 128
	nan := float32(math.NaN())
	for _, layout := range matmulLayouts {
		for _, copies := range []bool{true, false} {
			matmulPackCopy = copies
			poisonA := gputest.Upload(t, d, "nan a", fill(M*K, nan))
			poisonB := gputest.Upload(t, d, "nan b", fill(2*N*K, nan))
			poisonOut := gputest.Output(t, d, "nan out", M*2*N, 0)
			gputest.Run(t, d, func(r *gpu.Recorder) error {
				return Matmul(r, poisonOut, poisonA, poisonB, M, 2*N, K, layout, false)
			})
			a, b := randVec(rng, M*K, 1), randVec(rng, K*N, 1)
			out := gputest.Output(t, d, "out", M*N, nan)
			ga, gb := gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b)
			r := d.NewRecorder()
			require.NoError(t, Matmul(r, out, ga, gb, M, N, K, layout, false))
			require.NoError(t, r.Flush())
			want := map[bool]map[Layout]int{true: {NN: 1, NT: 1, TN: 1}, false: {NN: 2, NT: 2, TN: 3}}[copies][layout]
			require.Equal(t, want, r.Dispatches, "%v copies=%v: dispatches", layout, copies)
			got := gputest.Read(t, out, M*N)
			tol.Check(t, layout.String(), got, matmulWant(a, b, nil, M, N, K, layout, false), matmulTol(K))
		}
	}
	matmulPackCopy = true
}

// TestMatmulCopyable checks when a block may be copied: rows contiguous,
// whole texels, a 16-byte aligned start and a row pitch that is a multiple
// of 256 bytes (64 floats).
func TestMatmulCopyable(t *testing.T) {
	buf := &gpu.Buffer{Size: 1 << 20}
	side := func(base, sy, sx, rows, cols int) *matmulPackSide {
		return &matmulPackSide{src: buf.Arg(), base: base, sy: sy, sx: sx, rows: rows, cols: cols, w: 64, h: 256}
	}
	require.True(t, side(0, 64, 1, 128, 64).copyable())
	require.True(t, side(4, 128, 1, 4, 4).copyable())
	require.False(t, side(0, 68, 1, 128, 64).copyable(), "row pitch not a multiple of 256 bytes")
	require.False(t, side(2, 64, 1, 128, 64).copyable(), "start not on a texel")
	require.False(t, side(0, 1, 64, 64, 64).copyable(), "columns contiguous: needs the transposed layout")
	require.False(t, side(0, 64, 1, 126, 64).copyable(), "a partial texel along K")
	require.False(t, side(0, 64, 1, 128, 62).copyable(), "a partial texel")
	require.False(t, side(0, 64, 1, 128, 512).copyable(), "wider than the texture")
}

func fill(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}
