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

// Tolerances against the float64 reference: fp32 dot products of up to 128
// terms, exp, and sums over up to 1100 keys. Each is the measured worst error
// on lavapipe (these tests, with attnVerbose on) times a margin of 10-20x.
var (
	// attnFwdTol: out is a convex mix of v (|v| <= 1), measured worst |err|
	// 3.2e-7; lse is O(1..10), worst 9.3e-7 at T = 1100 (covered by Rtol).
	attnFwdTol = tol.Tol{Atol: 5e-6, Rtol: 5e-6}
	// attnBwdTol: gradients sum O(T) terms of both signs, so they get an
	// absolute floor; measured worst |err| 2.5e-6 (dv at T = 1100, |dv| 1.5).
	attnBwdTol = tol.Tol{Atol: 2e-5, Rtol: 2e-5}
	// attnExtremeTol: logits reach ±300, where one fp32 ulp of a score is
	// ~3e-5 and exp turns that into a 3e-5 relative change of a probability;
	// gradients carry |q|, |k| up to ~17 as factors. Measured worst: out 4.3e-6,
	// lse 3.6e-5 (relative 1.2e-7), dq 8.2e-6 on |dq| 6.7.
	attnExtremeTol = tol.Tol{Atol: 1e-4, Rtol: 1e-4}
)

// attnVerbose logs every comparison's error summary (go test -v), which is
// how the tolerances below were measured.
var attnVerbose = false

// attnShape is one attention problem size.
type attnShape struct{ B, T, NH, HS int }

func (s attnShape) String() string {
	return fmt.Sprintf("B%d_T%d_NH%d_HS%d", s.B, s.T, s.NH, s.HS)
}

// attnHostile crosses T = 1, primes, one tile plus one (33) and two plus
// one (65), an exact tile multiple (64), HS from the
// minimum 4 through a non-power-of-two 12 to the maximum 128, one and three
// heads, one and two batch rows.
var attnHostile = []attnShape{
	{1, 1, 1, 4}, {2, 7, 3, 8}, {1, 65, 3, 16}, {2, 17, 1, 64},
	{1, 33, 2, 12}, {2, 3, 3, 4}, {1, 31, 1, 128}, {1, 64, 2, 8},
}

// attnCase runs the forward and backward on the GPU and checks out, lse,
// dq, dk and dv against the reference, with NaN guards on every output.
func attnCase(t *testing.T, d *gpu.Device, s attnShape, q, k, v, g []float32, fwdTol, bwdTol tol.Tol) *gpu.Recorder {
	t.Helper()
	n, nl := s.B*s.T*s.NH*s.HS, s.B*s.NH*s.T
	out, lse := gputest.Output(t, d, "out", n, 0), gputest.Output(t, d, "lse", nl, 0)
	dq, dk, dv := gputest.Output(t, d, "dq", n, 7), gputest.Output(t, d, "dk", n, 7), gputest.Output(t, d, "dv", n, 7)
	gq, gk, gv := gputest.Upload(t, d, "q", q), gputest.Upload(t, d, "k", k), gputest.Upload(t, d, "v", v)
	gg := gputest.Upload(t, d, "dout", g)
	r := d.NewRecorder()
	require.NoError(t, AttentionForward(r, out, lse, gq, gk, gv, s.B, s.T, s.NH, s.HS))
	require.NoError(t, AttentionBackward(r, dq, dk, dv, gg, gq, gk, gv, out, lse, s.B, s.T, s.NH, s.HS))
	require.NoError(t, r.Flush())

	wantOut, wantLse := ref.AttentionForward(tol.F64(q), tol.F64(k), tol.F64(v), s.B, s.T, s.NH, s.HS)
	wdq, wdk, wdv := ref.AttentionBackward(tol.F64(g), tol.F64(q), tol.F64(k), tol.F64(v), s.B, s.T, s.NH, s.HS)
	if attnVerbose {
		for _, x := range []struct {
			n string
			b *gpu.Buffer
			w []float64
		}{{"out", out, wantOut}, {"lse", lse, wantLse}, {"dq", dq, wdq}, {"dk", dk, wdk}, {"dv", dv, wdv}} {
			t.Logf("%s %s: %s", s, x.n, tol.Compare(gputest.Read(t, x.b, len(x.w)), x.w, tol.Tol{}))
		}
	}
	tol.Check(t, s.String()+" out", gputest.Read(t, out, n), wantOut, fwdTol)
	tol.Check(t, s.String()+" lse", gputest.Read(t, lse, nl), wantLse, fwdTol)
	tol.Check(t, s.String()+" dq", gputest.Read(t, dq, n), wdq, bwdTol)
	tol.Check(t, s.String()+" dk", gputest.Read(t, dk, n), wdk, bwdTol)
	tol.Check(t, s.String()+" dv", gputest.Read(t, dv, n), wdv, bwdTol)
	for _, b := range []*gpu.Buffer{out, dq, dk, dv} {
		gputest.CheckPadding(t, b, n)
	}
	gputest.CheckPadding(t, lse, nl)
	return r
}

func TestAttentionHostile(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, s := range attnHostile {
		t.Run(s.String(), func(t *testing.T) {
			n := s.B * s.T * s.NH * s.HS
			attnCase(t, d, s, randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1),
				attnFwdTol, attnBwdTol)
		})
	}
}

// TestAttentionExtreme scales q and k so the scaled logits reach ±300: the
// row maximum must be subtracted before exp for out, lse and the gradients
// to stay finite and right.
func TestAttentionExtreme(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(23, 24))
	s := attnShape{2, 19, 2, 16}
	n := s.B * s.T * s.NH * s.HS
	q, k := randVec(rng, n, 1), randVec(rng, n, 1)
	// Find the largest |logit| and scale q and k to put it at 300.
	maxLogit := 0.0
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.NH; h++ {
			for i := 0; i < s.T; i++ {
				for j := 0; j <= i; j++ {
					dot := 0.0
					for c := 0; c < s.HS; c++ {
						qi := ((b*s.T+i)*s.NH+h)*s.HS + c
						kj := ((b*s.T+j)*s.NH+h)*s.HS + c
						dot += float64(q[qi]) * float64(k[kj])
					}
					maxLogit = math.Max(maxLogit, math.Abs(dot)/math.Sqrt(float64(s.HS)))
				}
			}
		}
	}
	f := float32(math.Sqrt(300 / maxLogit))
	for i := range q {
		q[i] *= f
		k[i] *= f
	}
	attnCase(t, d, s, q, k, randVec(rng, n, 1), randVec(rng, n, 1), attnExtremeTol, attnExtremeTol)
}

// TestAttentionLong uses T = 1100 and HS = 64: one invocation looping over
// all keys and all of HS would run 70,400 iterations, past lavapipe's
// 65,535 loop limit, and silently stop.
func TestAttentionLong(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(25, 26))
	s := attnShape{1, 1100, 1, 64}
	n := s.B * s.T * s.NH * s.HS
	attnCase(t, d, s, randVec(rng, n, 1), randVec(rng, n, 1), randVec(rng, n, 1), randVec(rng, n, 1),
		attnFwdTol, attnBwdTol)
}

// TestAttentionUniformLong runs T = 2100 at the largest head size, 128, with
// q = 0, where attention is uniform over the visible keys and the reference
// is cheap in closed form: out_t = mean(v_0..v_t), lse_t = log(t+1),
// dv_j = Σ_{t>=j} dout_t/(t+1), dk = 0 and
// dq_t = (Σ_{j<=t} (dout_t·v_j) k_j - D_t Σ_{j<=t} k_j) / ((t+1) sqrt(HS))
// with D_t = dout_t·out_t. Looping over all keys and HS/4 vec4s in one
// invocation would take 67,200 trips here.
func TestAttentionUniformLong(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(31, 32))
	T, HS := 2100, 128
	n := T * HS
	kk, vv, gg := randVec(rng, n, 1), randVec(rng, n, 1), randVec(rng, n, 1)
	q, k, v := gputest.Upload(t, d, "q", make([]float32, n)), gputest.Upload(t, d, "k", kk), gputest.Upload(t, d, "v", vv)
	g := gputest.Upload(t, d, "dout", gg)
	out, lse := gputest.Output(t, d, "out", n, 0), gputest.Output(t, d, "lse", T, 0)
	dq, dk, dv := gputest.Output(t, d, "dq", n, 7), gputest.Output(t, d, "dk", n, 7), gputest.Output(t, d, "dv", n, 7)
	gputest.Run(t, d, func(r *gpu.Recorder) error {
		if err := AttentionForward(r, out, lse, q, k, v, 1, T, 1, HS); err != nil {
			return err
		}
		return AttentionBackward(r, dq, dk, dv, g, q, k, v, out, lse, 1, T, 1, HS)
	})

	wo, wl, wdq, wdv := make([]float64, n), make([]float64, T), make([]float64, n), make([]float64, n)
	vsum, ksum := make([]float64, HS), make([]float64, HS)
	vk := make([]float64, HS*HS) // Σ_{j<=t} v_j k_jᵀ
	for tt := 0; tt < T; tt++ {
		row := func(x []float32, c int) float64 { return float64(x[tt*HS+c]) }
		wl[tt] = math.Log(float64(tt + 1))
		D := 0.0
		for c := 0; c < HS; c++ {
			vsum[c] += row(vv, c)
			ksum[c] += row(kk, c)
			wo[tt*HS+c] = vsum[c] / float64(tt+1)
			D += row(gg, c) * wo[tt*HS+c]
		}
		for a := 0; a < HS; a++ {
			for c := 0; c < HS; c++ {
				vk[a*HS+c] += row(vv, a) * row(kk, c)
			}
		}
		for c := 0; c < HS; c++ {
			acc := 0.0
			for a := 0; a < HS; a++ {
				acc += row(gg, a) * vk[a*HS+c]
			}
			wdq[tt*HS+c] = (acc - D*ksum[c]) / float64(tt+1) / math.Sqrt(float64(HS))
		}
	}
	suffix := make([]float64, HS)
	for tt := T - 1; tt >= 0; tt-- {
		for c := 0; c < HS; c++ {
			suffix[c] += float64(gg[tt*HS+c]) / float64(tt+1)
			wdv[tt*HS+c] = suffix[c]
		}
	}
	tol.Check(t, "uniform out", gputest.Read(t, out, n), wo, attnFwdTol)
	tol.Check(t, "uniform lse", gputest.Read(t, lse, T), wl, attnFwdTol)
	tol.Check(t, "uniform dq", gputest.Read(t, dq, n), wdq, attnBwdTol)
	tol.Check(t, "uniform dk", gputest.Read(t, dk, n), make([]float64, n), attnBwdTol)
	tol.Check(t, "uniform dv", gputest.Read(t, dv, n), wdv, attnBwdTol)
	for _, b := range []*gpu.Buffer{out, dq, dk, dv} {
		gputest.CheckPadding(t, b, n)
	}
	gputest.CheckPadding(t, lse, T)
}

// TestAttentionSplit shrinks the submission budget so every kernel of the
// tiled path is split into many dispatches (over blocks and over (batch,
// head) pairs) and checks the result is unchanged. It runs the tiled kernels
// explicitly: on a CPU adapter the public launchers choose the variant of
// attention_rows.go at this shape (TestAttentionRowsSplit splits that one).
func TestAttentionSplit(t *testing.T) {
	d := gputest.Device(t)
	old := d.SubmitBudget
	t.Cleanup(func() { d.SubmitBudget = old })
	// Two to four tile steps per dispatch (HS = 8; 4, 6 or 8 tile matmuls
	// per step).
	d.SubmitBudget = attnDispatchShare * 2 * 8 * attnTile * attnTile * 8
	rng := rand.New(rand.NewPCG(27, 28))
	s := attnShape{2, 100, 3, 8}
	n := s.B * s.T * s.NH * s.HS
	qh, kh, vh, gh := randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1)
	q, k, v, g := gputest.Upload(t, d, "q", qh), gputest.Upload(t, d, "k", kh), gputest.Upload(t, d, "v", vh),
		gputest.Upload(t, d, "dout", gh)
	got, dispatches := attnRun(t, d, s, false, q, k, v, g)
	require.Greater(t, dispatches, 3*s.B*s.NH, "budget should force many dispatches")
	wo, wl := ref.AttentionForward(tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
	wdq, wdk, wdv := ref.AttentionBackward(tol.F64(gh), tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
	for i, w := range [][]float64{wo, wl, wdq, wdk, wdv} {
		tol.Check(t, s.String()+" "+attnOutputs[i], got[i], w, attnOutputTol(i))
	}
}

// TestAttentionChunks checks that the dispatch split covers every (pair,
// block) exactly once and keeps each dispatch within budget unless it is a
// single block of a single pair.
func TestAttentionChunks(t *testing.T) {
	for _, c := range []struct{ nBH, nBlk, maxTiles int }{
		{1, 1, 1}, {6, 4, 3}, {5, 17, 1000}, {24, 64, 100}, {3, 9, 2}, {7, 3, 1 << 30},
	} {
		for name, tiles := range map[string]func(int) int{
			"causal-q":  func(b int) int { return b + 1 },
			"causal-kv": func(b int) int { return c.nBlk - b },
		} {
			seen := make([]int, c.nBH*c.nBlk)
			for _, ch := range attnChunks(c.nBH, c.nBlk, tiles, c.maxTiles) {
				cost := 0
				for b := ch.blk0; b < ch.blk0+ch.nblk; b++ {
					cost += tiles(b)
					for bh := ch.bh0; bh < ch.bh0+ch.nbh; bh++ {
						seen[bh*c.nBlk+b]++
					}
				}
				require.Equal(t, ch.nbh*cost, ch.tiles, "%s %+v", name, ch)
				if ch.nbh*ch.nblk > 1 {
					require.LessOrEqual(t, ch.tiles, c.maxTiles, "%s %+v", name, ch)
				}
			}
			for i, k := range seen {
				require.Equal(t, 1, k, "%s %+v: (pair, block) %d covered %d times", name, c, i, k)
			}
		}
	}
}

func TestAttentionBadSizes(t *testing.T) {
	d := gputest.Device(t)
	small := gputest.Output(t, d, "small", 8, 0)
	big := gputest.Output(t, d, "big", 4096, 0)
	r := d.NewRecorder()
	require.ErrorContains(t, AttentionForward(r, big, big, big, big, big, 1, 4, 1, 6), "multiple of 4")
	require.ErrorContains(t, AttentionForward(r, big, big, big, big, big, 1, 4, 1, 132), "multiple of 4")
	require.ErrorContains(t, AttentionForward(r, big, big, big, big, big, 0, 4, 1, 8), "positive")
	require.ErrorContains(t, AttentionForward(r, small, big, big, big, big, 1, 16, 1, 8), "small")
	require.ErrorContains(t, AttentionBackward(r, big, big, big, big, big, big, big, big, small, 2, 40, 2, 8), "lse")
	require.NoError(t, r.Flush())
}

// BenchmarkAttention times the forward plus backward of causal attention.
// FLOP counts the matrix products a dense causal kernel needs: forward
// 4*B*NH*T*T*HS/2 (q·kᵀ and P·v over the lower triangle), backward twice
// that (q·kᵀ recomputed, dout·vᵀ, Pᵀ·dout, dSᵀ·q and dS·k, counted as 4);
// the metric is flop/s = 12*B*NH*T*T*HS/2 per iteration / seconds. The
// tiny preset's shape (HS = 32) runs the register-only variant on a CPU
// adapter, the HS = 64 shapes the tiled kernels.
func BenchmarkAttention(b *testing.B) {
	d := gputest.Device(b)
	rng := rand.New(rand.NewPCG(29, 30))
	for _, s := range []attnShape{{8, 128, 4, 32}, {1, 256, 8, 64}, {1, 1024, 8, 64}} {
		b.Run(s.String(), func(b *testing.B) {
			n, nl := s.B*s.T*s.NH*s.HS, s.B*s.NH*s.T
			q, k, v := gputest.Upload(b, d, "q", randVec(rng, n, 1)), gputest.Upload(b, d, "k", randVec(rng, n, 1)),
				gputest.Upload(b, d, "v", randVec(rng, n, 1))
			g := gputest.Upload(b, d, "dout", randVec(rng, n, 1))
			out, lse := gputest.Output(b, d, "out", n, 0), gputest.Output(b, d, "lse", nl, 0)
			dq, dk, dv := gputest.Output(b, d, "dq", n, 0), gputest.Output(b, d, "dk", n, 0), gputest.Output(b, d, "dv", n, 0)
			step := func() {
				gputest.Run(b, d, func(r *gpu.Recorder) error {
					if err := AttentionForward(r, out, lse, q, k, v, s.B, s.T, s.NH, s.HS); err != nil {
						return err
					}
					return AttentionBackward(r, dq, dk, dv, g, q, k, v, out, lse, s.B, s.T, s.NH, s.HS)
				})
			}
			step() // compile the pipelines and build the bind groups
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			flop := 12 * float64(s.B*s.NH) * float64(s.T) * float64(s.T) * float64(s.HS) / 2
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds(), "flop/s")
		})
	}
}
