package shaders

import (
	"fmt"
	"math"
	"strconv"

	"github.com/step-gpu/step-gpu/gpu"
)

// Geometry of the attention kernels (attention.wgsl). A workgroup owns
// attnTile rows of one (batch, head) pair and walks tiles of attnTile rows;
// each of its attnWG invocations handles 4 x 2 (row, row) pairs of a tile and
// accumulates 4 output rows x 2 vec4 chunks, one of 16 chunk slots, so the
// head size is at most 2*16 vec4s.
const (
	attnTile  = 32
	attnWG    = attnTile * attnTile / 8
	attnMaxHS = 2 * 16 * 4
)

// attnDispatchShare is the fraction (1/attnDispatchShare) of the device's
// submission budget one attention dispatch may take, so that a dispatch is a
// fraction of a second on lavapipe and the recorder can still pack several.
const attnDispatchShare = 4.0

// attnCPUWeight scales the work these kernels report on a CPU adapter. The
// submission budget assumes the slowest kernels run near 1.5 GFLOP/s on
// lavapipe; attention measured ~1 GFLOP per CPU-second on the 2-core
// development machine, 0.3-0.6 GFLOP/s of wall time while it was shared, so
// it counts three times its FLOPs there to keep every submission near a
// second (WEBGPU.md trap 1).
const attnCPUWeight = 3.0

var (
	attentionSrc = own("attention")
	attnSubs     = map[string]string{
		"FTILE":     strconv.Itoa(attnTile),
		"FTILE_SQ4": strconv.Itoa(attnTile * attnTile / 4),
		"FTILE4":    strconv.Itoa(attnTile / 4),
		"FWG":       strconv.Itoa(attnWG),
	}
	// Bindings: 0 params, 1 out/dq/dk, 2 lse, 3 q, 4 k, 5 v, 6 dout, 7 out
	// (read by the backward), 8 dv.
	kAttnForward = kernel("attention", "forward", []gpu.BindKind{gpu.BindUniform,
		gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead}, attnSubs)
	kAttnBackQ = kernel("attention", "backward_q", []gpu.BindKind{gpu.BindUniform,
		gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead}, attnSubs)
	kAttnBackKV = kernel("attention", "backward_kv", []gpu.BindKind{gpu.BindUniform,
		gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead,
		gpu.BindReadWrite}, attnSubs)
)

// AttentionForward records out = softmax(q·kᵀ/sqrt(HS) + causal mask)·v per
// head, and saves the row log-sum-exp lse (B, NH, T) for the backward. Query
// t attends keys 0..t. Only lse is stored besides out: no T x T matrix.
// HS must be a multiple of 4 and at most 128. On CPU adapters shapes
// that fit run the register-only variant of attention_rows.wgsl, tested
// against these tiled kernels (attnUseRows).
func AttentionForward(r *gpu.Recorder, out, // (B, T, C)
	lse, // (B, NH, T)
	q, k, v *gpu.Buffer, // (B, T, C)
	B, T, NH, HS int) error {
	if err := attnCheck("attention forward", B, T, NH, HS,
		[]*gpu.Buffer{out, q, k, v}, lse); err != nil {
		return err
	}
	if attnUseRows(r.Device(), T, HS) {
		return attnRowsForward(r, out, lse, q, k, v, B, T, NH, HS)
	}
	return attnTiledForward(r, out, lse, q, k, v, B, T, NH, HS)
}

// attnTiledForward records the tiled forward of attention.wgsl: the
// reference path, and the one GPUs and long sequences take.
func attnTiledForward(r *gpu.Recorder, out, lse, q, k, v *gpu.Buffer, B, T, NH, HS int) error {
	// Query block qb visits key tiles 0..qb: q·kᵀ and P·v, 2 FLOPs each.
	return attnLaunch(r, kAttnForward, B*NH, T, NH, HS, 4, func(blk int) int { return blk + 1 },
		out.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg())
}

// AttentionBackward records dq, dk, dv (overwritten) from dout and the
// forward's q, k, v, out and lse. Probabilities are recomputed from lse, and
// D = rowsum(dout*out) is recomputed inside each workgroup, so the backward
// needs no scratch memory. dq is produced by query blocks looping over keys,
// dk and dv by key blocks looping over queries: every output element has one
// owner, no atomics. On CPU adapters shapes that fit run the register-only
// variant (attnUseRows), which uses dq as scratch for D before writing it.
func AttentionBackward(r *gpu.Recorder, dq, dk, dv, // (B, T, C)
	dout, q, k, v, out *gpu.Buffer, // (B, T, C)
	lse *gpu.Buffer, // (B, NH, T)
	B, T, NH, HS int) error {
	if err := attnCheck("attention backward", B, T, NH, HS,
		[]*gpu.Buffer{dq, dk, dv, dout, q, k, v, out}, lse); err != nil {
		return err
	}
	if attnUseRows(r.Device(), T, HS) {
		return attnRowsBackward(r, dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, HS)
	}
	return attnTiledBackward(r, dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, HS)
}

// attnTiledBackward records the tiled backward of attention.wgsl.
func attnTiledBackward(r *gpu.Recorder, dq, dk, dv, dout, q, k, v, out, lse *gpu.Buffer, B, T, NH, HS int) error {
	// Query block qb visits key tiles 0..qb: q·kᵀ, dout·vᵀ and dS·k.
	if err := attnLaunch(r, kAttnBackQ, B*NH, T, NH, HS, 6, func(blk int) int { return blk + 1 },
		dq.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), dout.Arg(), out.Arg()); err != nil {
		return err
	}
	// Key block kb visits query tiles kb..nT-1: q·kᵀ, dout·vᵀ, Pᵀ·dout and
	// dSᵀ·q.
	nT := (T + attnTile - 1) / attnTile
	return attnLaunch(r, kAttnBackKV, B*NH, T, NH, HS, 8, func(blk int) int { return nT - blk },
		dk.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), dout.Arg(), out.Arg(), dv.Arg())
}

// attnCheck validates the sizes and that every (B, T, C) buffer and the
// (B, NH, T) lse buffer are large enough.
func attnCheck(what string, B, T, NH, HS int, rows []*gpu.Buffer, lse *gpu.Buffer) error {
	if B < 1 || T < 1 || NH < 1 {
		return fmt.Errorf("%s: B=%d T=%d NH=%d must be positive", what, B, T, NH)
	}
	if HS < 4 || HS > attnMaxHS || HS%4 != 0 {
		return fmt.Errorf("%s: head size HS=%d must be a multiple of 4 in 4..%d", what, HS, attnMaxHS)
	}
	need := uint64(4 * B * T * NH * HS)
	for _, b := range rows {
		if b.Size < need {
			return fmt.Errorf("%s: buffer %s holds %d bytes, (B, T, C) = (%d, %d, %d) needs %d",
				what, b.Name, b.Size, B, T, NH*HS, need)
		}
	}
	if n := uint64(4 * B * NH * T); lse.Size < n {
		return fmt.Errorf("%s: buffer %s holds %d bytes, lse (B, NH, T) = (%d, %d, %d) needs %d",
			what, lse.Name, lse.Size, B, NH, T, n)
	}
	return nil
}

// attnChunk is one dispatch: (batch, head) pairs bh0..bh0+nbh-1 times
// blocks blk0..blk0+nblk-1, costing tiles tile steps in all.
type attnChunk struct{ bh0, nbh, blk0, nblk, tiles int }

// attnChunks splits nBH pairs x nBlk blocks into dispatches of at most
// maxTiles tile steps, where block blk of one pair costs tiles(blk) steps.
// Consecutive blocks are grouped first, then pairs; a single block of a
// single pair is never split, whatever its cost.
func attnChunks(nBH, nBlk int, tiles func(blk int) int, maxTiles int) []attnChunk {
	var out []attnChunk
	for b0 := 0; b0 < nBlk; {
		b1, cost := b0, 0
		for b1 < nBlk && (b1 == b0 || cost+tiles(b1) <= maxTiles) {
			cost += tiles(b1)
			b1++
		}
		nbh := max(1, min(nBH, maxTiles/cost))
		for bh0 := 0; bh0 < nBH; bh0 += nbh {
			n := min(nbh, nBH-bh0)
			out = append(out, attnChunk{bh0: bh0, nbh: n, blk0: b0, nblk: b1 - b0, tiles: n * cost})
		}
		b0 = b1
	}
	return out
}

// attnLaunch records kernel k over every (pair, block) in dispatches whose
// estimated work stays within 1/attnDispatchShare of the device's submission
// budget, so no single dispatch nears the watchdog on a slow adapter.
// A tile step does ops*attnTile²*HS FLOPs: ops is 2 per tile-sized matrix
// product (4 forward: q·kᵀ and P·v; 6 backward_q; 8 backward_kv), the work
// being weighted by attnCPUWeight on a CPU adapter.
func attnLaunch(r *gpu.Recorder, k gpu.Kernel, nBH, T, NH, HS, ops int, tiles func(blk int) int, args ...gpu.Arg) error {
	d := r.Device()
	p, err := d.Pipeline(k)
	if err != nil {
		return err
	}
	tileWork := float64(ops*attnTile*attnTile) * float64(HS)
	if d.IsCPU() {
		tileWork *= attnCPUWeight
	}
	maxTiles := int(math.Max(1, math.Min(d.SubmitBudget/attnDispatchShare/tileWork, math.MaxInt32)))
	nBlk := (T + attnTile - 1) / attnTile
	scale := float32(1 / math.Sqrt(float64(HS)))
	for _, c := range attnChunks(nBH, nBlk, tiles, maxTiles) {
		g := d.Grid1D(c.nbh*c.nblk, 1)
		params := gpu.Params(uint32(T), uint32(NH), uint32(HS/4), uint32(c.bh0), uint32(c.nbh),
			uint32(c.blk0), uint32(c.nblk), g.X, scale)
		if err := r.Dispatch(p, g, float64(c.tiles)*tileWork, params, args...); err != nil {
			return err
		}
	}
	return nil
}
