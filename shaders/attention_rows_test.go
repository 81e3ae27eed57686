package shaders

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/step-gpu/step-gpu/gpu"
	"github.com/step-gpu/step-gpu/gpu/gputest"
	"github.com/step-gpu/step-gpu/internal/tol"
	"github.com/step-gpu/step-gpu/nn/ref"
	"github.com/stretchr/testify/require"
)

// attnRowsPinTol bounds the register-only variant against the tiled kernels
// (both fp32, summing in different orders): measured worst |err| on
// lavapipe (attnVerbose on) 9.5e-7 for lse (|lse| ~5, T = 65), 7.2e-7 for
// dv, 2.7e-7 for dk; a margin of ~10x.
var attnRowsPinTol = tol.Tol{Atol: 1e-5, Rtol: 1e-5}

// attnRowsHostile adds to attnHostile the shapes that stress the variant's
// column chunks: HS = 64 (one full chunk of 16), HS = 36 (9 vec4s: a
// partial chunk of 16), HS = 128 (2 chunks of 16), HS = 20 (one partial
// chunk of 5 of 8), HS = 4 and 12 (chunks of 4, partial), T = 5 and 6 (a
// partial block of 4 rows), and T = 1100 (275 blocks; the tiled kernels'
// TestAttentionLong shape at the head size the variant is chosen for). The
// last two have C a multiple of 64 and B*T of 4, so their textures are
// copied rather than packed (attnRowsArgs), as at every preset's shapes.
var attnRowsHostile = append(append([]attnShape(nil), attnHostile...),
	attnShape{2, 7, 2, 64}, attnShape{1, 9, 2, 36}, attnShape{1, 13, 1, 128}, attnShape{3, 5, 2, 20},
	attnShape{1, 6, 1, 4}, attnShape{2, 11, 1, 12}, attnShape{1, 1100, 1, 32},
	attnShape{2, 8, 2, 32}, attnShape{1, 12, 4, 64})

// attnOutputs names the five results of attnRun, in order.
var attnOutputs = []string{"out", "lse", "dq", "dk", "dv"}

// attnOutputTol returns the reference tolerance of attnRun's result i.
func attnOutputTol(i int) tol.Tol {
	if i < 2 {
		return attnFwdTol
	}
	return attnBwdTol
}

// attnRun records the forward and backward of one path (the variant if rows,
// else the tiled kernels) into fresh outputs, checks their padding, and
// returns out, lse, dq, dk, dv and the number of dispatches.
func attnRun(t *testing.T, d *gpu.Device, s attnShape, rows bool, q, k, v, g *gpu.Buffer) ([5][]float32, int) {
	t.Helper()
	n, nl := s.B*s.T*s.NH*s.HS, s.B*s.NH*s.T
	out, lse := gputest.Output(t, d, "out", n, 0), gputest.Output(t, d, "lse", nl, 0)
	dq, dk, dv := gputest.Output(t, d, "dq", n, 7), gputest.Output(t, d, "dk", n, 7), gputest.Output(t, d, "dv", n, 7)
	r := d.NewRecorder()
	if rows {
		require.NoError(t, attnRowsForward(r, out, lse, q, k, v, s.B, s.T, s.NH, s.HS))
		require.NoError(t, attnRowsBackward(r, dq, dk, dv, g, q, k, v, out, lse, s.B, s.T, s.NH, s.HS))
	} else {
		require.NoError(t, attnTiledForward(r, out, lse, q, k, v, s.B, s.T, s.NH, s.HS))
		require.NoError(t, attnTiledBackward(r, dq, dk, dv, g, q, k, v, out, lse, s.B, s.T, s.NH, s.HS))
	}
	require.NoError(t, r.Flush())
	for _, b := range []*gpu.Buffer{out, dq, dk, dv} {
		gputest.CheckPadding(t, b, n)
	}
	gputest.CheckPadding(t, lse, nl)
	return [5][]float32{gputest.Read(t, out, n), gputest.Read(t, lse, nl), gputest.Read(t, dq, n),
		gputest.Read(t, dk, n), gputest.Read(t, dv, n)}, r.Dispatches
}

// attnRowsModes are the ways the variant can read its inputs on d: storage
// buffers, and read-only storage textures where d has them (lavapipe does,
// so CI checks both).
func attnRowsModes(d *gpu.Device) []bool {
	if storageTexUsable(d) {
		return []bool{false, true}
	}
	return []bool{false}
}

// attnRowsPinTextures sets attnRowsTextures for the rest of the test.
func attnRowsPinTextures(t *testing.T, on bool) {
	attnRowsTextures = on
	t.Cleanup(func() { attnRowsTextures = true })
}

// TestAttentionRowsPinned pins the register-only variant, reading its
// inputs from buffers and from textures, to the tiled kernels (the simple
// path) on hostile shapes, whatever the device would choose, and checks
// the variant against the float64 reference too. The textures are copied
// where C is a multiple of 64 and B*T of 4 (the last two shapes) and packed
// by the kernel otherwise.
func TestAttentionRowsPinned(t *testing.T) {
	d := gputest.Device(t)
	rng := rand.New(rand.NewPCG(41, 42))
	for _, s := range attnRowsHostile {
		t.Run(s.String(), func(t *testing.T) {
			n := s.B * s.T * s.NH * s.HS
			qh, kh, vh, gh := randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1)
			q, k, v, g := gputest.Upload(t, d, "q", qh), gputest.Upload(t, d, "k", kh), gputest.Upload(t, d, "v", vh),
				gputest.Upload(t, d, "dout", gh)
			simple, _ := attnRun(t, d, s, false, q, k, v, g)
			wo, wl := ref.AttentionForward(tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
			wdq, wdk, wdv := ref.AttentionBackward(tol.F64(gh), tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
			want := [5][]float64{wo, wl, wdq, wdk, wdv}
			for _, tex := range attnRowsModes(d) {
				attnRowsPinTextures(t, tex)
				fast, _ := attnRun(t, d, s, true, q, k, v, g)
				if tex {
					_, ok := matmulStateOf(d).tex[matmulTexKey{"attn q", uint32(attnRowsTexWidth(s.NH * s.HS)),
						uint32(nextPow2(max(s.B*s.T, 4)))}]
					require.True(t, ok, "the texture kernels ran (their q texture exists)")
				}
				mode := fmt.Sprintf("%s rows(textures=%v)", s, tex)
				for i, name := range attnOutputs {
					if attnVerbose {
						t.Logf("%s %s: %s", mode, name, tol.Compare(fast[i], tol.F64(simple[i]), tol.Tol{}))
					}
					tol.Check(t, mode+" vs tiled "+name, fast[i], tol.F64(simple[i]), attnRowsPinTol)
					tol.Check(t, mode+" "+name, fast[i], want[i], attnOutputTol(i))
				}
			}
		})
	}
}

// TestAttentionRowsSplit shrinks the submission budget so the variant is
// split into many dispatches (over blocks and over pairs and chunks), with
// one and with two column chunks per item, and checks the results against
// the reference.
func TestAttentionRowsSplit(t *testing.T) {
	d := gputest.Device(t)
	old := d.SubmitBudget
	t.Cleanup(func() { d.SubmitBudget = old })
	// A few block steps per dispatch at HS = 20 (4 or 6 ops*16*HS FLOPs
	// each).
	d.SubmitBudget = attnDispatchShare * 5 * 6 * 16 * 20
	rng := rand.New(rand.NewPCG(43, 44))
	s := attnShape{2, 23, 3, 20}
	n := s.B * s.T * s.NH * s.HS
	require.True(t, attnUseRows(d, s.T, s.HS) || !d.IsCPU())
	r := attnCase(t, d, s, randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1),
		attnFwdTol, attnBwdTol)
	if d.IsCPU() {
		require.Greater(t, r.Dispatches, 3*s.B*s.NH, "budget should force many dispatches")
	}
	// Two column chunks per item (HS = 72: 16 vec4s and a partial 2), each
	// its own invocation.
	s = attnShape{2, 23, 3, 72}
	n = s.B * s.T * s.NH * s.HS
	qh, kh, vh, gh := randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1)
	q, k, v, g := gputest.Upload(t, d, "q", qh), gputest.Upload(t, d, "k", kh), gputest.Upload(t, d, "v", vh),
		gputest.Upload(t, d, "dout", gh)
	got, dispatches := attnRun(t, d, s, true, q, k, v, g)
	require.Greater(t, dispatches, 3*s.B*s.NH, "budget should force many dispatches")
	wo, wl := ref.AttentionForward(tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
	wdq, wdk, wdv := ref.AttentionBackward(tol.F64(gh), tol.F64(qh), tol.F64(kh), tol.F64(vh), s.B, s.T, s.NH, s.HS)
	for i, w := range [][]float64{wo, wl, wdq, wdk, wdv} {
		tol.Check(t, s.String()+" "+attnOutputs[i], got[i], w, attnOutputTol(i))
	}
}

// TestAttentionRowsChoice checks where the variant is used: its loop trips
// stay below attnRowsMaxTrips (and so far below lavapipe's 65,535), heads
// wider than one chunk of 16 vec4s and the longest sequences fall back to the
// tiled kernels, and GPUs always use them.
func TestAttentionRowsChoice(t *testing.T) {
	d := gputest.Device(t)
	require.Less(t, attnRowsMaxTrips, 65535*4/5)
	for _, c := range []struct {
		T, HS int
		rows  bool
	}{{1, 4, true}, {128, 32, true}, {1024, 32, true}, {6000, 32, true}, {6100, 32, false}, {6000, 8, true},
		{16000, 8, true}, {20000, 8, false}, {256, 36, true}, {256, 64, true}, {3000, 64, true}, {3200, 64, false}, {64, 72, false},
		{64, 128, false}} {
		require.Equal(t, c.rows && d.IsCPU(), attnUseRows(d, c.T, c.HS), "T=%d HS=%d", c.T, c.HS)
	}
}

// TestAttentionRowsTexFits checks when the variant reads textures: only
// where the device's storage textures are usable, and B*T rows (as a power
// of two) and C/4 columns (plus the pad) fit the texture limit.
func TestAttentionRowsTexFits(t *testing.T) {
	d := gputest.Device(t)
	lim := int(d.Limits.MaxTextureDimension2D)
	has := storageTexUsable(d)
	require.Equal(t, has, attnRowsTexFits(d, 8*256, 512))
	require.Equal(t, has, attnRowsTexFits(d, lim, 512))
	require.False(t, attnRowsTexFits(d, lim+1, 512), "rows past the limit")
	require.Equal(t, has, attnRowsTexFits(d, 64, 4*(lim-matmulTexPadX)), "the widest texture")
	require.False(t, attnRowsTexFits(d, 64, 4*(lim-matmulTexPadX+1)), "columns past the limit")
	attnRowsPinTextures(t, false)
	require.False(t, attnRowsTexFits(d, 64, 64), "switched off")
}

// TestAttentionRowsFallback breaks one of the texture kernels, as a device
// that offers storage textures but cannot build that kernel would, and
// checks that attention falls back to the buffer kernels with correct
// results, that storage textures are then marked failed on the device, and
// that the matmul leaves its storage-texture path too.
func TestAttentionRowsFallback(t *testing.T) {
	d := gputest.Device(t)
	if !storageTexUsable(d) || !d.IsCPU() {
		t.Skip("needs usable storage textures and the register-only variant (a CPU adapter)")
	}
	matmulPin(t, d, MatmulAuto)
	st := matmulStateOf(d)
	old := attnRowsKernels[1].stats
	t.Cleanup(func() {
		attnRowsKernels[1].stats = old
		clear(st.attnPipes)
		st.chosen, st.probe, st.texBroken = MatmulAuto, "", ""
	})
	p, err := MatmulPathOf(d)
	require.NoError(t, err)
	clear(st.attnPipes) // resolved by earlier tests with the working kernel
	attnRowsKernels[1].stats.Entry = "no_such_entry"
	attnRowsKernels[1].stats.Name += "(broken)"
	rng := rand.New(rand.NewPCG(45, 46))
	s := attnShape{2, 16, 2, 64}
	n := s.B * s.T * s.NH * s.HS
	attnCase(t, d, s, randVec(rng, n, 2), randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1), attnFwdTol, attnBwdTol)
	ok, why := StorageTexturesUsable(d)
	require.False(t, ok)
	require.Contains(t, why, "row_stats+tex(broken)")
	after, err := MatmulPathOf(d)
	require.NoError(t, err)
	if p == MatmulStorageTexture {
		require.Equal(t, MatmulTexture, after)
		require.Contains(t, MatmulReport(d), "storage textures failed since")
	}
}
