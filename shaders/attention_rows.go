package shaders

import (
	"math"
	"strconv"

	"github.com/step-gpu/step-gpu/gpu"
)

// Geometry of the register-only attention variant (attention_rows.wgsl): an
// invocation owns attnRowsBlock rows of one (batch, head) pair and walks
// blocks of attnRowsBlock rows on the other side of the causal mask;
// workgroups hold attnRowsWG invocations (one SIMD vector on lavapipe).
// An invocation produces one chunk of at most attnRowsCH vec4 columns of its
// rows, a 4 x chunk vec4 accumulator (attnRowsChunk picks 4, 8 or 16 vec4s);
// wider heads take several chunks, each recomputing the full-head scores.
// Every storage load costs several vector FMAs on lavapipe, so one chunk
// per head is worth its compile time: at HS = 64, chunks of 16 instead of 8
// made forward+backward 1.6x faster (`step-gpu bench --preset d256 --op
// attention`, B8 T256 NH4 HS64: 210-217 ms against 338-347 ms for the tiled
// kernels in alternating runs, and 335-429 ms for chunks of 8), at a cold
// compile of 2.8-5.2 s per kernel (MESA_SHADER_CACHE_DISABLE=true: forward
// 5.2 s, backward_q 4.4 s, backward_kv 2.8 s at load 0.5). That may pass the
// 5 s of WEBGPU.md trap 1, which is no longer fatal: the recorder gives a
// pipeline's first dispatch a submission of its own and waits without
// blocking (docs/PLATFORM.md), so a slow compile delays the run only.
// backward_kv holds dk and dv together, 128 live vec4s at chunk 16: it
// compiled and ran faster than a kernel for each (one compile, P recomputed
// once).
const (
	attnRowsBlock = 4
	attnRowsWG    = 8
	attnRowsCH    = 16
)

// attnRowsChunk returns the column chunk, in vec4s, the variant uses for
// heads of HS4 vec4s: the smallest of 4, 8 and 16 that holds the whole head,
// else 16 (HS > 64 takes several chunks). Three pipelines per kernel in all,
// not one per head size: each costs a compile of a second or more.
func attnRowsChunk(HS4 int) int {
	for _, ch := range []int{4, 8} {
		if HS4 <= ch {
			return ch
		}
	}
	return attnRowsCH
}

// attnRowsMaxTrips bounds the loop trips of one invocation of the variant,
// counted generously by attnRowsTrips, well below lavapipe's
// 65,535-trip loop limiter (WEBGPU.md trap 2). Longer sequences use the
// tiled kernels of attention.wgsl, whose trips grow with T/32.
const attnRowsMaxTrips = 50000

// attnRowsCPUWeight scales the work the variant reports on a CPU adapter,
// like attnCPUWeight for the tiled kernels: the variant measured 3-5
// GFLOP/s of wall time (step-gpu bench, tiny preset) on the shared 2-core
// development machine, above the 1.5 GFLOP/s the submission budget assumes,
// so it counts its FLOPs once and a full submission stays well under a
// second.
const attnRowsCPUWeight = 1.0

var (
	attentionRowsSrc = own("attention_rows")
	attnRowsSubs     = map[string]string{"CH": strconv.Itoa(attnRowsCH)}
	// Bindings as in attention.wgsl: 0 params, 1 out/dq/dk, 2 lse, 3 q,
	// 4 k, 5 v, 6 dout, 7 out (read by backward_q and row_stats) or D (read
	// by backward_kv), 8 dv (backward_kv).
	attnRowsBackBind = []gpu.BindKind{gpu.BindUniform,
		gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead}
	kAttnRowsForward = kernel("attention_rows", "forward", []gpu.BindKind{gpu.BindUniform,
		gpu.BindReadWrite, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead}, attnRowsSubs)
	kAttnRowsBackQ  = kernel("attention_rows", "backward_q", attnRowsBackBind, attnRowsSubs)
	kAttnRowsStats  = kernel("attention_rows", "row_stats", attnRowsBackBind, attnRowsSubs)
	kAttnRowsBackKV = kernel("attention_rows", "backward_kv",
		append(append([]gpu.BindKind(nil), attnRowsBackBind...), gpu.BindReadWrite), attnRowsSubs)
)

// attnRowsTrips returns the most loop trips one invocation of the variant
// runs at sequence length T and head size HS: ceil(T/4) blocks of at most
// two loops over HS/4 vec4s (q·kᵀ and dout·vᵀ) and one over the chunk's
// columns, which is unrolled but counted anyway, plus the loops over its
// own rows; rounded up to three loops over HS/4 per block.
func attnRowsTrips(T, HS int) int {
	return (T+attnRowsBlock-1)/attnRowsBlock*(3*HS/4+attnRowsChunk(HS/4)+1) + HS
}

// attnUseRows reports whether the register-only variant runs this shape on
// this device: on CPU adapters, for heads of at most attnRowsCH vec4s (one
// column chunk), and only while its loops stay within attnRowsMaxTrips.
// There it measured 2-3x faster than the tiled kernels on lavapipe at HS 32
// and 1.6x at HS 64 (forward alone 2.2x); with two chunks of 8 at HS 64 the
// recomputed scores had made it no faster. GPUs keep
// the tiled kernels, whose 128-invocation workgroups suit them (the
// variant's 8-invocation workgroups would leave most of a GPU's SIMD width
// idle; not measured).
func attnUseRows(d *gpu.Device, T, HS int) bool {
	return d.IsCPU() && HS <= 4*attnRowsCH && attnRowsTrips(T, HS) <= attnRowsMaxTrips
}

// attnRowsForward records the variant's forward; see AttentionForward.
func attnRowsForward(r *gpu.Recorder, out, lse, q, k, v *gpu.Buffer, B, T, NH, HS int) error {
	// Query block qb visits key blocks 0..qb: q·kᵀ and P·v, 2 FLOPs each.
	return attnRowsLaunch(r, kAttnRowsForward, B*NH, T, NH, HS, 4, func(blk int) int { return blk + 1 },
		out.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg())
}

// attnRowsBackward records the variant's backward; see AttentionBackward.
// row_stats first stores D = rowsum(dout*out) into dq, which backward_kv
// reads; backward_q runs last and overwrites dq (it recomputes its own D).
func attnRowsBackward(r *gpu.Recorder, dq, dk, dv, dout, q, k, v, out, lse *gpu.Buffer, B, T, NH, HS int) error {
	d := r.Device()
	p, err := d.Pipeline(kAttnRowsStats)
	if err != nil {
		return err
	}
	g := d.Grid1D(B*NH*T, 64)
	if err := r.Dispatch(p, g, float64(2*B*NH*T*HS), gpu.Params(uint32(T), uint32(NH), uint32(0), uint32(B*NH),
		uint32(0), uint32(0), g.X, float32(0), uint32(HS/4), uint32(1), uint32(0), uint32(0)),
		dq.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), dout.Arg(), out.Arg()); err != nil {
		return err
	}
	// Key block kb visits query blocks kb..nb-1: q·kᵀ, dout·vᵀ, dSᵀ·q for
	// dk and Pᵀ·dout for dv.
	nb := (T + attnRowsBlock - 1) / attnRowsBlock
	keys := func(blk int) int { return nb - blk }
	if err := attnRowsLaunch(r, kAttnRowsBackKV, B*NH, T, NH, HS, 8, keys,
		dk.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), dout.Arg(), dq.Arg(), dv.Arg()); err != nil {
		return err
	}
	// Query block qb visits key blocks 0..qb: q·kᵀ, dout·vᵀ and dS·k.
	return attnRowsLaunch(r, kAttnRowsBackQ, B*NH, T, NH, HS, 6, func(blk int) int { return blk + 1 },
		dq.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), dout.Arg(), out.Arg())
}

// attnRowsLaunch records kernel k over every (pair, column chunk, block) in
// dispatches bounded like attnLaunch's. A block step does ops*4*4*HS FLOPs
// per chunk (each chunk recomputes the full-HS scores; counted in full).
func attnRowsLaunch(r *gpu.Recorder, k gpu.Kernel, nBH, T, NH, HS, ops int, steps func(blk int) int, args ...gpu.Arg) error {
	d := r.Device()
	HS4 := HS / 4
	ch := attnRowsChunk(HS4)
	nc := (HS4 + ch - 1) / ch
	p, err := d.Pipeline(with(k, map[string]string{"CH": strconv.Itoa(ch)}))
	if err != nil {
		return err
	}
	stepWork := float64(ops*attnRowsBlock*attnRowsBlock) * float64(HS)
	if d.IsCPU() {
		stepWork *= attnRowsCPUWeight
	}
	maxSteps := int(math.Max(1, math.Min(d.SubmitBudget/attnDispatchShare/stepWork, math.MaxInt32)))
	nBlk := (T + attnRowsBlock - 1) / attnRowsBlock
	scale := float32(1 / math.Sqrt(float64(HS)))
	for _, c := range attnChunks(nBH*nc, nBlk, steps, maxSteps) {
		g := d.Grid1D(c.nbh*c.nblk, attnRowsWG)
		params := gpu.Params(uint32(T), uint32(NH), uint32(c.bh0), uint32(c.nbh),
			uint32(c.blk0), uint32(c.nblk), g.X, scale, uint32(HS4), uint32(nc), uint32(0), uint32(0))
		if err := r.Dispatch(p, g, float64(c.tiles)*stepWork, params, args...); err != nil {
			return err
		}
	}
	return nil
}
