package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/stretchr/testify/require"
)

// loraTol: every output is an f32 sum of at most ~100 products of O(1)
// values (Cin, Cout <= 67 plus R <= 8, or N = 33 rows). Measured on
// lavapipe: at most 3.5e-6 absolute on outputs up to ~20 (normalised 2e-7);
// 1e-5 absolute plus 1e-5 relative leaves a 3-10x margin, while a wrong
// index or a missed term (errors of O(0.1)) still fails.
var loraTol = tol.Tol{Atol: 1e-5, Rtol: 1e-5}

// loraLongTol: the loop-bound cases sum up to 300,007 products of O(1)
// values in f32, so rounding grows like sqrt(K)·2^-24 times partial sums of
// a few hundred. Measured: at most 1.0e-3 absolute on outputs of ~280
// (normalised 4e-6); 1e-2 plus 1e-4 relative keeps a 10x margin, while a
// dropped or doubled reduction chunk is off by O(10) or more.
var loraLongTol = tol.Tol{Atol: 1e-2, Rtol: 1e-4}

// loraHalfMergeTol: the GPU adds B·A in f32 and rounds once to half, the
// reference rounds its float64 sum: they may differ by one half ulp
// (2^-10 relative) near a rounding tie, and by one subnormal step (2^-24).
var loraHalfMergeTol = tol.Tol{Atol: 1.0 / (1 << 24), Rtol: 1.0 / (1 << 10)}

// loraNaN fills outputs that must be overwritten, so an accumulate where an
// overwrite belongs shows as NaN.
var loraNaN = float32(math.NaN())

type loraCase struct {
	N, Cin, Cout, R int
	wf              WeightFormat
}

// loraRun runs the forward and backward on the device and compares every
// output with nn/ref, checking every output's guard padding.
func loraRun(t *testing.T, d *gpu.Device, rng *rand.Rand, c loraCase, tl tol.Tol) {
	t.Helper()
	N, Cin, Cout, R := c.N, c.Cin, c.Cout, c.R
	const scale = 0.75
	x, w := randVec(rng, N*Cin, 1), randVec(rng, Cout*Cin, 1)
	a, b := randVec(rng, R*Cin, 1), randVec(rng, Cout*R, 1)
	dy := randVec(rng, N*Cout, 1)
	da0, db0 := randVec(rng, R*Cin, 1), randVec(rng, Cout*R, 1)

	var gw *gpu.Buffer
	if c.wf == Half {
		words := PackHalf(w)
		w = UnpackHalf(words, len(w)) // the reference sees the half-rounded weight
		gw = gputest.UploadU32(t, d, "w", words)
	} else {
		gw = gputest.Upload(t, d, "w", w)
	}
	gx, ga, gb, gdy := gputest.Upload(t, d, "x", x), gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b),
		gputest.Upload(t, d, "dy", dy)
	y, u := gputest.Output(t, d, "y", N*Cout, loraNaN), gputest.Output(t, d, "u", N*R, loraNaN)
	dx, du := gputest.Output(t, d, "dx", N*Cin, loraNaN), gputest.Output(t, d, "du", N*R, loraNaN)
	da, db := gputest.Output(t, d, "da", R*Cin, 0), gputest.Output(t, d, "db", Cout*R, 0)
	require.NoError(t, da.WriteF32(0, da0))
	require.NoError(t, db.WriteF32(0, db0))
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := LoRAForward(r, y, u, gx, gw, ga, gb, N, Cin, Cout, R, scale, c.wf); err != nil {
			return err
		}
		return LoRABackward(r, dx, da, db, du, gdy, gx, u, gw, ga, gb, N, Cin, Cout, R, scale, c.wf)
	})

	wantY, wantU := make([]float64, N*Cout), make([]float64, N*R)
	ref.LoRAForward(wantY, wantU, tol.F64(x), tol.F64(w), tol.F64(a), tol.F64(b), N, Cin, Cout, R, scale)
	wantDx, wantDu := make([]float64, N*Cin), make([]float64, N*R)
	wantDa, wantDb := tol.F64(da0), tol.F64(db0)
	ref.LoRABackward(wantDx, wantDa, wantDb, wantDu, tol.F64(dy), tol.F64(x), wantU, tol.F64(w), tol.F64(a), tol.F64(b),
		N, Cin, Cout, R, scale)
	for _, o := range []struct {
		name string
		buf  *gpu.Buffer
		want []float64
	}{{"y", y, wantY}, {"u", u, wantU}, {"dx", dx, wantDx}, {"du", du, wantDu}, {"da", da, wantDa}, {"db", db, wantDb}} {
		name := o.name + " " + c.wf.String()
		tol.Check(t, name, gputest.Read(t, o.buf, len(o.want)), o.want, tl)
		gputest.CheckPadding(t, o.buf, len(o.want))
	}
}

// TestLoRAHostileShapes covers sizes 1, primes and non-multiples of 4 and
// of the workgroup, in both weight formats: every combination mixes the
// scalar and vector loaders.
func TestLoRAHostileShapes(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, wf := range []WeightFormat{F32, Half} {
		for _, N := range []int{1, 5, 33} {
			for _, Cin := range []int{1, 3, 8, 67} {
				for _, Cout := range []int{1, 5, 64} {
					for _, R := range []int{1, 2, 8} {
						loraRun(t, d, rng, loraCase{N, Cin, Cout, R, wf}, loraTol)
						if t.Failed() {
							t.Fatalf("failed at N=%d Cin=%d Cout=%d R=%d %v", N, Cin, Cout, R, wf)
						}
					}
				}
			}
		}
	}
}

// TestLoRAVariants pins the 8x8 vector-load kernels to the simple 4x4
// scalar-load ones: shapes whose rows are multiples of 4 (P = 12 and 20
// leave a half-empty 8-column tile) run with each, both against the
// reference; then again with a tiny submission budget, which cuts every
// product into row bands and every N reduction into chunks.
func TestLoRAVariants(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(23, 24))
	cases := []loraCase{{33, 8, 64, 8, F32}, {13, 12, 20, 4, F32}, {13, 12, 20, 4, Half}, {12, 64, 8, 4, Half}}
	defer func() { loraScalarOnly = false }()
	for _, scalar := range []bool{false, true} {
		loraScalarOnly = scalar
		for _, c := range cases {
			loraRun(t, d, rng, c, loraTol)
		}
	}
	loraScalarOnly = false
	budget := d.SubmitBudget
	defer func() { d.SubmitBudget = budget }()
	d.SubmitBudget = 4e4
	for _, c := range []loraCase{{101, 12, 20, 4, F32}, {101, 13, 20, 4, Half}} {
		loraRun(t, d, rng, c, loraTol)
	}
}

// TestLoRALoopBounds uses reductions that a naive one-loop-per-output
// design would run past lavapipe's 65,535 iterations: Cin (forward and dA),
// Cout (du and dx) and N (dA and dB) of 270,001 or more. They exercise the
// reduction chunks, which must accumulate exactly once each.
func TestLoRALoopBounds(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(25, 26))
	loraRun(t, d, rng, loraCase{1, 270001, 2, 1, F32}, loraLongTol)
	loraRun(t, d, rng, loraCase{1, 2, 270001, 1, Half}, loraLongTol)
	loraRun(t, d, rng, loraCase{300007, 1, 1, 1, F32}, loraLongTol)
}

// TestLoRAZeroBIsFrozenLinear checks that with B = 0 (the adapters' state
// at initialisation) the LoRA forward equals the frozen linear bit for bit,
// and that the frozen linear's backward matches the reference.
func TestLoRAZeroBIsFrozenLinear(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(27, 28))
	for _, wf := range []WeightFormat{F32, Half} {
		N, Cin, Cout, R := 7, 12, 5, 4
		x, w, a, dy := randVec(rng, N*Cin, 1), randVec(rng, Cout*Cin, 1), randVec(rng, R*Cin, 1), randVec(rng, N*Cout, 1)
		var gw *gpu.Buffer
		if wf == Half {
			words := PackHalf(w)
			w = UnpackHalf(words, len(w))
			gw = gputest.UploadU32(t, d, "w", words)
		} else {
			gw = gputest.Upload(t, d, "w", w)
		}
		gx, ga, gdy := gputest.Upload(t, d, "x", x), gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "dy", dy)
		gb := gputest.Upload(t, d, "b", make([]float32, Cout*R))
		y, yf := gputest.Output(t, d, "y", N*Cout, loraNaN), gputest.Output(t, d, "yf", N*Cout, loraNaN)
		u, dx := gputest.Output(t, d, "u", N*R, loraNaN), gputest.Output(t, d, "dx", N*Cin, loraNaN)
		gputest.Run(t, d, func(r *gpu.Recorder) error {
			if err := LoRAForward(r, y, u, gx, gw, ga, gb, N, Cin, Cout, R, 2, wf); err != nil {
				return err
			}
			if err := FrozenLinearForward(r, yf, gx, gw, N, Cin, Cout, wf); err != nil {
				return err
			}
			return FrozenLinearBackward(r, dx, gdy, gw, N, Cin, Cout, wf)
		})
		require.Equal(t, gputest.Read(t, yf, N*Cout), gputest.Read(t, y, N*Cout), "B = 0 must give the frozen linear (%v)", wf)
		wantY := make([]float64, N*Cout)
		ref.LoRAForward(wantY, nil, tol.F64(x), tol.F64(w), nil, nil, N, Cin, Cout, 0, 0)
		tol.Check(t, "frozen y "+wf.String(), gputest.Read(t, yf, N*Cout), wantY, loraTol)
		wantDx := make([]float64, N*Cin)
		ref.LoRABackward(wantDx, nil, nil, nil, tol.F64(dy), tol.F64(x), nil, tol.F64(w), nil, nil, N, Cin, Cout, 0, 0)
		tol.Check(t, "frozen dx "+wf.String(), gputest.Read(t, dx, N*Cin), wantDx, loraTol)
		for _, o := range []struct {
			b *gpu.Buffer
			n int
		}{{y, N * Cout}, {yf, N * Cout}, {u, N * R}, {dx, N * Cin}} {
			gputest.CheckPadding(t, o.b, o.n)
		}
	}
}

// TestLoRAMerge checks W += s·B·A in both formats against the reference
// (for Half: the reference merges in float64 and rounds to half once).
func TestLoRAMerge(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(29, 30))
	for _, wf := range []WeightFormat{F32, Half} {
		for _, s := range [][3]int{{1, 1, 1}, {5, 3, 2}, {64, 67, 8}, {7, 9, 3}} {
			Cout, Cin, R := s[0], s[1], s[2]
			const scale = -1.25
			w, a, b := randVec(rng, Cout*Cin, 1), randVec(rng, R*Cin, 1), randVec(rng, Cout*R, 1)
			var gw *gpu.Buffer
			n := Cout * Cin
			if wf == Half {
				words := PackHalf(w)
				w = UnpackHalf(words, n)
				n = len(words)
				gw = gputest.Output(t, d, "w", n, 0)
				require.NoError(t, gw.WriteU32(0, words))
			} else {
				gw = gputest.Output(t, d, "w", n, 0)
				require.NoError(t, gw.WriteF32(0, w))
			}
			gputest.Run(t, d, func(r *gpu.Recorder) error {
				return MergeLoRA(r, gw, gputest.Upload(t, d, "a", a), gputest.Upload(t, d, "b", b), Cout, Cin, R, scale, wf)
			})
			want := tol.F64(w)
			ref.LoRAMerge(want, tol.F64(a), tol.F64(b), Cout, Cin, R, scale)
			if wf == Half {
				words, err := gw.ReadU32(0, n)
				require.NoError(t, err)
				got := UnpackHalf(words, Cout*Cin)
				for i := range want {
					want[i] = float64(UnpackHalf(PackHalf([]float32{float32(want[i])}), 1)[0])
				}
				tol.Check(t, "merge half", got, want, loraHalfMergeTol)
				if Cout*Cin%2 == 1 {
					require.Zero(t, words[n-1]>>16, "merge wrote the unused high half of the last word")
				}
			} else {
				tol.Check(t, "merge f32", gputest.Read(t, gw, n), want, loraTol)
			}
			gputest.CheckPadding(t, gw, n)
		}
	}
}

// loraHalfCases are values whose binary16 bits are known: ties to even,
// subnormals, the rounding boundary at 2^-25 and saturation past 65504.
var loraHalfCases = []struct {
	v    float32
	bits uint16
}{
	{0, 0x0000}, {float32(math.Copysign(0, -1)), 0x8000}, {1, 0x3c00}, {-2, 0xc000},
	{1 + 1.0/2048, 0x3c00},        // tie between 0x3c00 and 0x3c01: even
	{1 + 3.0/2048, 0x3c02},        // tie between 0x3c01 and 0x3c02: even
	{1 + 1.0/2048 + 1e-7, 0x3c01}, // just above the tie
	{65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7bff}, {-1e9, 0xfbff},
	{float32(math.Inf(1)), 0x7bff}, {float32(math.Inf(-1)), 0xfbff},
	{1.0 / (1 << 14), 0x0400},                    // smallest normal
	{1.0 / (1 << 24), 0x0001},                    // smallest subnormal
	{1.0 / (1 << 25), 0x0000},                    // tie with zero: even
	{1.5 / (1 << 25), 0x0001},                    // above the tie
	{3.0 / (1 << 25), 0x0002},                    // tie between 1 and 2 subnormal steps: even
	{-1023.0 / (1 << 24), 0x83ff},                // largest subnormal
	{1e-30, 0x0000},                              // far below: zero
	{float32(1.0/(1<<14) - 1.0/(1<<26)), 0x0400}, // rounds up into the normals
}

// TestLoRAPackHalfHost checks the host packer on known bit patterns, that
// every finite half survives a round trip, and the packing layout.
func TestLoRAPackHalfHost(t *testing.T) {
	for _, c := range loraHalfCases {
		require.Equalf(t, c.bits, halfBits(c.v), "halfBits(%g)", c.v)
	}
	require.True(t, math.IsNaN(float64(halfValue(halfBits(float32(math.NaN()))))))
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 {
			continue // Inf and NaN never come out of the packer
		}
		require.Equalf(t, uint16(h), halfBits(halfValue(uint16(h))), "round trip of %#04x", h)
	}
	words := PackHalf([]float32{1, -2, 0.5})
	require.Equal(t, []uint32{0xc000_3c00, 0x0000_3800}, words)
	require.Equal(t, []float32{1, -2, 0.5}, UnpackHalf(words, 3))
	// Rounding error of a random value is at most half an ulp (2^-11
	// relative for normal halves).
	rng := rand.New(rand.NewPCG(31, 32))
	for _, v := range randVec(rng, 1000, 60000) {
		got := UnpackHalf(PackHalf([]float32{v}), 1)[0]
		if math.Abs(float64(v)) >= 1.0/(1<<14) {
			require.LessOrEqualf(t, math.Abs(float64(got-v)), math.Abs(float64(v))/2048, "round %g -> %g", v, got)
		}
	}
}

// TestLoRAPackHalfGPU checks the device packer bit for bit against the host
// one, over the known cases (NaN excluded: clamping NaN is unspecified in
// WGSL) and random values of every magnitude, with an odd count.
func TestLoRAPackHalfGPU(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(33, 34))
	var src []float32
	for _, c := range loraHalfCases {
		if !math.IsInf(float64(c.v), 0) {
			src = append(src, c.v)
		}
	}
	for i := 0; i < 1001; i++ {
		src = append(src, float32((rng.Float64()*2-1)*math.Pow(2, rng.Float64()*50-30)))
	}
	if len(src)%2 == 0 {
		src = append(src, 3)
	}
	n := len(src)
	words := (n + 1) / 2
	dst := gputest.Output(t, d, "half", words, 0)
	gs := gputest.Upload(t, d, "src", src)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return PackHalfGPU(r, dst, gs, n) })
	got, err := dst.ReadU32(0, words)
	require.NoError(t, err)
	want := PackHalf(src)
	for i := range want {
		require.Equalf(t, want[i], got[i], "word %d of (%g, %g)", i, src[2*i], src[min(2*i+1, n-1)])
	}
	gputest.CheckPadding(t, dst, words)
}

// TestLoRAUnpackHalfGPU checks the device unpacker bit for bit against
// the host one over every half bit pattern (both halves of a word; NaN
// payloads compared as NaN), with an odd count so the last word is half
// used.
func TestLoRAUnpackHalfGPU(t *testing.T) {
	d := gputest.Device(t)
	n := 1<<16 + 1 // every pattern, plus one low half
	words := make([]uint32, (n+1)/2)
	for e := range n {
		words[e/2] |= uint32(e&0xFFFF) << (16 * (e % 2))
	}
	src := gputest.UploadU32(t, d, "half words", words)
	dst := gputest.Output(t, d, "f32", n, 0)
	gputest.Run(t, d, func(r *gpu.Recorder) error { return UnpackHalfGPU(r, dst, src, n) })
	got, err := dst.ReadF32(0, n)
	require.NoError(t, err)
	want := UnpackHalf(words, n)
	for i := range want {
		if math.IsNaN(float64(want[i])) {
			require.Truef(t, math.IsNaN(float64(got[i])), "pattern %#04x: %v, want NaN", i&0xFFFF, got[i])
			continue
		}
		require.Equalf(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "pattern %#04x", i&0xFFFF)
	}
	gputest.CheckPadding(t, dst, n)
}

// BenchmarkLoRA times the forward and the backward at N=2048,
// Cin=Cout=512 for R = 8 and 64 in both weight formats, reporting GFLOP/s
// (2 per multiply-add of the products in nn/ref/lora.go). Run with
// -benchtime=3x on lavapipe.
func BenchmarkLoRA(b *testing.B) {
	d := gputest.Device(b)
	const N, Cin, Cout = 2048, 512, 512
	rng := rand.New(rand.NewPCG(41, 42))
	for _, R := range []int{8, 64} {
		for _, wf := range []WeightFormat{F32, Half} {
			w := randVec(rng, Cout*Cin, 1)
			var gw *gpu.Buffer
			if wf == Half {
				gw = gputest.UploadU32(b, d, "w", PackHalf(w))
			} else {
				gw = gputest.Upload(b, d, "w", w)
			}
			x, dy := gputest.Upload(b, d, "x", randVec(rng, N*Cin, 1)), gputest.Upload(b, d, "dy", randVec(rng, N*Cout, 1))
			a, bb := gputest.Upload(b, d, "a", randVec(rng, R*Cin, 1)), gputest.Upload(b, d, "b", randVec(rng, Cout*R, 1))
			y, u, dx, du := gputest.Output(b, d, "y", N*Cout, 0), gputest.Output(b, d, "u", N*R, 0),
				gputest.Output(b, d, "dx", N*Cin, 0), gputest.Output(b, d, "du", N*R, 0)
			da, db := gputest.Output(b, d, "da", R*Cin, 0), gputest.Output(b, d, "db", Cout*R, 0)
			fwd := func(r *gpu.Recorder) error {
				return LoRAForward(r, y, u, x, gw, a, bb, N, Cin, Cout, R, 0.5, wf)
			}
			bwd := func(r *gpu.Recorder) error {
				return LoRABackward(r, dx, da, db, du, dy, x, u, gw, a, bb, N, Cin, Cout, R, 0.5, wf)
			}
			nr, nc, ni := float64(N), float64(Cout), float64(Cin)
			rr := float64(R)
			fwdFLOPs := 2 * nr * (ni*nc + ni*rr + rr*nc)
			bwdFLOPs := 2 * nr * (2*nc*rr + 2*rr*ni + nc*ni + rr*ni)
			for _, op := range []struct {
				name  string
				run   func(r *gpu.Recorder) error
				flops float64
			}{{"forward", fwd, fwdFLOPs}, {"backward", bwd, bwdFLOPs}} {
				b.Run(fmt.Sprintf("%s/R=%d/%v", op.name, R, wf), func(b *testing.B) {
					gputest.Run(b, d, op.run) // compile and warm up outside the timing
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						gputest.Run(b, d, op.run)
					}
					b.ReportMetric(op.flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
