package shaders

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/stretchr/testify/require"
)

// matmulAtolPerK scales the absolute tolerance with K. Inputs are uniform in
// [-1, 1], so a length-K dot product has magnitude ~sqrt(K/9) and fp32
// rounding error ~sqrt(K)*6e-8*sqrt(K/9) (random walk of per-term errors);
// 2e-7*K is ~10x that for every K tested (K=4099: 8e-4 against ~1e-4) and
// far below what one lost or duplicated term (~0.3) or K chunk would cost.
const matmulAtolPerK = 2e-7

// matmulRtol covers the rounding of the accumulated value (accumulate mode
// adds an O(1) initial value): a few fp32 ulps.
const matmulRtol = 1e-5

func matmulTol(K int) tol.Tol { return tol.Tol{Atol: matmulAtolPerK * float64(K), Rtol: matmulRtol} }

// matmulShapes are hostile M x N x K: ones, primes, non-multiples of both
// paths' tiles (32x32 simple, 16x128 texture), K not a multiple of 4 and a K
// long enough (4099) that the texture path's K/4 loop and the simple path's
// K loop both run long. The last two have every size a multiple of 4 (but
// not of a tile), so the pack kernel's vec4 row and column reads (modes 0
// and 1) run in every layout, with partial texels only from padding. In the
// last two, rows of 64 floats or more (256-byte multiples) are copied into
// their textures instead (see TestMatmulCopiedOperands): every operand of
// 64x192x128, and 13x64x128's op(B) with op(A) read in place (tiled_sa,
// and tiled_sa_bt in NT).
var matmulShapes = [][3]int{
	{1, 1, 1}, {1, 17, 13}, {13, 1, 17}, {17, 13, 1}, {13, 17, 97}, {97, 13, 17}, {33, 130, 7}, {5, 3, 4099},
	{36, 20, 12}, {12, 132, 44}, {64, 192, 128}, {13, 64, 128},
}

var matmulLayouts = []Layout{NN, NT, TN}

// matmulPin forces a path on d for the rest of the test.
func matmulPin(t testing.TB, d *gpu.Device, p MatmulPath) {
	SetMatmulPath(d, p)
	t.Cleanup(func() { SetMatmulPath(d, MatmulAuto) })
}

// matmulTexPaths are the texture paths d can run: sampled textures, and
// read-only storage textures where the device offers them (lavapipe does,
// so CI checks both).
func matmulTexPaths(d *gpu.Device) []MatmulPath {
	if d.StorageTextureRead {
		return []MatmulPath{MatmulTexture, MatmulStorageTexture}
	}
	return []MatmulPath{MatmulTexture}
}

// matmulRun runs one product on the GPU with the given path and returns out;
// without accumulate out starts as NaN, which any read of it would spread.
func matmulRun(t *testing.T, d *gpu.Device, path MatmulPath, a, b, init []float32, M, N, K int, layout Layout, acc bool) []float32 {
	t.Helper()
	SetMatmulPath(d, path)
	out := gputest.Output(t, d, "out", M*N, float32(math.NaN()))
	if acc {
		require.NoError(t, out.WriteF32(0, init))
	}
	ga, gb := gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return Matmul(r, out, ga, gb, M, N, K, layout, acc) })
	gputest.CheckPadding(t, out, M*N)
	return gputest.Read(t, out, M*N)
}

// matmulWant is the float64 reference, plus init with accumulate.
func matmulWant(a, b, init []float32, M, N, K int, layout Layout, acc bool) []float64 {
	want := ref.Matmul(tol.F64(a), tol.F64(b), M, N, K, ref.MatmulLayout(layout))
	if acc {
		want = ref.AddScaled(want, tol.F64(init), 1)
	}
	return want
}

// matmulCheckShapes runs every shape, layout and accumulate mode on every
// path (the texture paths with and without reading op(A) in place),
// comparing each with the reference and the texture path with the simple
// one (the pin of the fast variants to the mainline).
func matmulCheckShapes(t *testing.T, shapes [][3]int) {
	d := gputest.Device(t)
	matmulPin(t, d, MatmulSimple)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, s := range shapes {
		M, N, K := s[0], s[1], s[2]
		for _, layout := range matmulLayouts {
			for _, acc := range []bool{false, true} {
				name := fmt.Sprintf("%dx%dx%d/%v/acc=%v", M, N, K, layout, acc)
				a, b, init := randVec(rng, M*K, 1), randVec(rng, K*N, 1), randVec(rng, M*N, 1)
				want := matmulWant(a, b, init, M, N, K, layout, acc)
				simple := matmulRun(t, d, MatmulSimple, a, b, init, M, N, K, layout, acc)
				tol.Check(t, name+"/simple", simple, want, matmulTol(K))
				// Each texture path with op(A) read in place where the
				// layout allows (tiled_sa), and with op(A) always packed
				// (tiled).
				for _, path := range matmulTexPaths(d) {
					for _, direct := range []bool{true, false} {
						matmulTexDirectA = direct
						tex := matmulRun(t, d, path, a, b, init, M, N, K, layout, acc)
						matmulTexDirectA = true
						sub := fmt.Sprintf("%s/%v(directA=%v)", name, path, direct)
						tol.Check(t, sub, tex, want, matmulTol(K))
						tol.Check(t, sub+"-vs-simple", tex, tol.F64(simple), matmulTol(K))
					}
				}
			}
		}
	}
}

func TestMatmulHostileShapes(t *testing.T) {
	matmulCheckShapes(t, matmulShapes)
}

// TestMatmulLongK crosses both the K chunk (8192) and lavapipe's 65,535
// loop-iteration limit: a kernel looping over all of K in one invocation
// would silently drop the terms past 65,535.
func TestMatmulLongK(t *testing.T) {
	matmulCheckShapes(t, [][3]int{{3, 2, 70001}})
}

// TestMatmulSplit lowers the per-dispatch work and the storage-binding
// limit so that products split into row, column and K blocks bound as
// buffer ranges at unaligned element offsets, as vocabulary-sized
// products do on a real device.
func TestMatmulSplit(t *testing.T) {
	oldCap, oldFLOPs := matmulBindingCap, matmulBlockFLOPs
	matmulBindingCap, matmulBlockFLOPs = 16<<10, 1.5e5
	t.Cleanup(func() { matmulBindingCap, matmulBlockFLOPs = oldCap, oldFLOPs })
	matmulCheckShapes(t, [][3]int{{130, 45, 101}, {132, 44, 100}, {128, 128, 192}})

	// The plans really split every dimension (columns only where B's
	// binding needs it, in NT).
	d := gputest.Device(t)
	a := gputest.Upload(t, d, "a", make([]float32, 130*101))
	b := gputest.Upload(t, d, "b", make([]float32, 101*45))
	out := gputest.Upload(t, d, "out", make([]float32, 130*45))
	var split [3]bool
	for _, layout := range matmulLayouts {
		op, err := newMatmulOp(out, a, b, 130, 45, 101, layout, false)
		require.NoError(t, err)
		size, err := op.plan(d, matmulTile, matmulTile, 1, nil)
		require.NoError(t, err)
		split[0] = split[0] || size.bm < 130
		split[1] = split[1] || size.bn < 45
		split[2] = split[2] || size.bk < 101
	}
	require.Equal(t, [3]bool{true, true, true}, split)
}

// TestMatmulPackModes checks which read pattern the pack kernel gets for
// each operand of each layout: vec4 rows or columns when sizes are
// multiples of 4, scalar reads otherwise, and the vec4 modes for sizes of 1.
func TestMatmulPackModes(t *testing.T) {
	modes := func(M, N, K int, layout Layout) [2]int {
		op, err := newMatmulOp(&gpu.Buffer{Size: 1 << 16}, &gpu.Buffer{Size: 1 << 16}, &gpu.Buffer{Size: 1 << 16}, M, N, K, layout, false)
		require.NoError(t, err)
		a := matmulPackSide{sy: op.sam, sx: op.sak, rows: M, cols: K}
		b := matmulPackSide{sy: op.sbk, sx: op.sbn, rows: K, cols: N}
		return [2]int{a.mode(), b.mode()}
	}
	require.Equal(t, [2]int{0, 0}, modes(36, 20, 12, NN))
	require.Equal(t, [2]int{0, 1}, modes(36, 20, 12, NT))
	require.Equal(t, [2]int{1, 0}, modes(36, 20, 12, TN))
	require.Equal(t, [2]int{2, 2}, modes(13, 17, 97, NN))
	require.Equal(t, [2]int{2, 2}, modes(13, 17, 97, NT))
	require.Equal(t, [2]int{0, 0}, modes(1, 1, 1, NT))
	odd := matmulPackSide{base: 2, sy: 4, sx: 1, rows: 3, cols: 3}
	require.Equal(t, 2, odd.mode(), "an unaligned base reads scalars")
}

// TestMatmulLayoutMirror checks that ref's layout constants, which the tests
// convert to, have the same values as this package's.
func TestMatmulLayoutMirror(t *testing.T) {
	for _, l := range matmulLayouts {
		require.Equal(t, l.String(), ref.MatmulLayout(l).String())
	}
}

func TestMatmulErrors(t *testing.T) {
	d := gputest.Device(t)
	a := gputest.Upload(t, d, "a", make([]float32, 12))
	b := gputest.Upload(t, d, "b", make([]float32, 12))
	out := gputest.Upload(t, d, "out", make([]float32, 12))
	r := d.NewRecorder()
	require.ErrorContains(t, Matmul(r, out, a, b, 3, 4, 4, Layout(7), false), "unknown layout")
	require.ErrorContains(t, Matmul(r, out, a, b, 0, 4, 4, NN, false), "at least 1")
	require.ErrorContains(t, Matmul(r, out, a, b, 4, 4, 4, NN, false), "needs 16")
	require.ErrorContains(t, Matmul(r, a, a, b, 3, 4, 4, NN, false), "aliases")
	require.NoError(t, r.Flush())
}

// TestMatmulAutoPath measures the paths on the test device and checks that
// the choice is remembered.
func TestMatmulAutoPath(t *testing.T) {
	d := gputest.Device(t)
	matmulPin(t, d, MatmulAuto)
	start := time.Now()
	p, err := MatmulPathOf(d)
	require.NoError(t, err)
	require.Contains(t, []MatmulPath{MatmulSimple, MatmulTexture, MatmulStorageTexture}, p)
	t.Logf("%s (on %s, chosen in %v)", MatmulReport(d), d.Info.Name, time.Since(start))
	again, err := MatmulPathOf(d)
	require.NoError(t, err)
	require.Equal(t, p, again)
	report := MatmulReport(d)
	require.Contains(t, report, fmt.Sprintf("matmul: %v path (probe %d^3 NT: ", p, matmulProbe))
	require.Contains(t, report, " texture ")
	require.Contains(t, report, " simple ")
	if d.StorageTextureRead {
		require.Contains(t, report, " storage-texture ")
		require.NotContains(t, report, "failed", "read-only storage textures are offered, so they must run")
	}
	if d.IsCPU() {
		// lavapipe's texture paths measured 4-7x faster at the probe size;
		// a probe that picks the simple path here is the bug it once was.
		require.True(t, p.textured(), report)
	}
	SetMatmulPath(d, MatmulSimple)
	require.Equal(t, "matmul: simple path (set)", MatmulReport(d))
}

// TestMatmulProbeFallback makes the storage-texture path fail, in the probe
// and then in the warm-up of the chosen path, as it would on a device that
// advertises read-only storage textures it cannot bind, and checks that
// the sampled texture path is used instead, that the report keeps only the
// first line of the error, and that attention then reads buffers too.
func TestMatmulProbeFallback(t *testing.T) {
	d := gputest.Device(t)
	if !d.StorageTextureRead || !d.IsCPU() {
		t.Skip("needs read-only storage textures and a device where the texture path wins (lavapipe)")
	}
	matmulPin(t, d, MatmulAuto)
	s := matmulStateOf(d)
	t.Cleanup(func() {
		clear(matmulProbeFail)
		clear(matmulWarmFail)
		s.chosen, s.probe, s.texBroken = MatmulAuto, "", ""
	})
	fault := errors.New("storage texture unbindable\nwgpu detail on a second line")
	require.True(t, attnRowsTexFits(d, 64, 64))

	s.chosen = MatmulAuto
	matmulProbeFail[MatmulStorageTexture] = fault
	p, err := MatmulPathOf(d)
	require.NoError(t, err)
	require.Equal(t, MatmulTexture, p)
	report := MatmulReport(d)
	require.Contains(t, report, "storage-texture failed (storage texture unbindable)")
	require.NotContains(t, report, "second line")
	require.False(t, storageTexUsable(d))
	require.False(t, attnRowsTexFits(d, 64, 64), "attention leaves storage textures once they failed")

	// The probe chose the storage path, whose warm-up then fails.
	clear(matmulProbeFail)
	s.texBroken = ""
	matmulWarmFail[MatmulStorageTexture] = fault
	p, probe, err := matmulWarmChosen(d, MatmulStorageTexture, "probe")
	require.NoError(t, err)
	require.Equal(t, MatmulTexture, p)
	require.Equal(t, "probe; storage-texture warm-up failed (matmul warm-up: storage texture unbindable)", probe)
	require.False(t, storageTexUsable(d))
}

// matmulBenchShapes are the speed targets, M x N x K.
var matmulBenchShapes = [][3]int{{1024, 1024, 1024}, {4096, 512, 2048}}

// BenchmarkMatmul reports GFLOP/s per shape, layout and path. The first
// product (pipeline compilation, packing textures, bind groups) runs before
// the timer; the timed part records b.N products back to back and waits for
// them (the recorder splits them into submissions by the submit budget).
func BenchmarkMatmul(b *testing.B) {
	d := gputest.Device(b)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, s := range matmulBenchShapes {
		M, N, K := s[0], s[1], s[2]
		ga := gputest.Upload(b, d, "a", randVec(rng, M*K, 1))
		gb := gputest.Upload(b, d, "b", randVec(rng, K*N, 1))
		out := gputest.Upload(b, d, "out", make([]float32, M*N))
		for _, layout := range matmulLayouts {
			for _, path := range append([]MatmulPath{MatmulSimple}, matmulTexPaths(d)...) {
				b.Run(fmt.Sprintf("%dx%dx%d/%v/%v", M, N, K, layout, path), func(b *testing.B) {
					matmulPin(b, d, path)
					gputest.Run(b, d, func(r *gpu.Recorder) error { return Matmul(r, out, ga, gb, M, N, K, layout, false) })
					b.ResetTimer()
					start := time.Now()
					gputest.Run(b, d, func(r *gpu.Recorder) error {
						for i := 0; i < b.N; i++ {
							if err := Matmul(r, out, ga, gb, M, N, K, layout, false); err != nil {
								return err
							}
						}
						return nil
					})
					el := time.Since(start)
					b.ReportMetric(2*float64(M)*float64(N)*float64(K)*float64(b.N)/el.Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
