package shaders

import (
	"fmt"
	"math"
	"strconv"
	"strings"

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
// Where the device has read-only storage textures the inputs are read from
// textures the launcher copies them into (attnRowsTextures): a storage
// texture load costs a quarter of a buffer's on lavapipe, and these loops
// are load-bound, so forward+backward ran 2.1-2.7x faster (d512 shapes,
// `step-gpu bench --preset d512 --op attention`, alternating binaries,
// 2026-12-03) and the kernels compile in 1.0-2.4 s cold instead of 2.7-3.8.
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
	// Bindings as in attention.wgsl: 0 params, 1 out/dq/dk, 2 lse, 3 q,
	// 4 k, 5 v, 6 dout, 7 out (read by backward_q and row_stats) or D (read
	// by backward_kv), 8 dv (backward_kv). attnRowsKernels[0] reads the
	// inputs from storage buffers, [1] from read-only storage textures
	// (attnRowsTextures).
	attnRowsKernels = [2]attnRowsSet{attnRowsKernelSet(false), attnRowsKernelSet(true)}
)

// attnRowsSet is the variant's four kernels for one way of binding inputs.
type attnRowsSet struct{ forward, backQ, stats, backKV gpu.Kernel }

// attnRowsInputs are the variant's inputs: WGSL name, load function and
// binding, in binding order.
var attnRowsInputs = []struct {
	name, ld string
	binding  int
}{{"q", "ld_q", 3}, {"k", "ld_k", 4}, {"v", "ld_v", 5}, {"dout", "ld_dout", 6}, {"o_in", "ld_o", 7}}

// attnRowsKernelSet declares the four kernels reading their inputs from
// storage buffers or (tex) from read-only storage textures.
func attnRowsKernelSet(tex bool) attnRowsSet {
	in := gpu.BindRead
	suffix := ""
	if tex {
		in, suffix = gpu.BindStorageTextureRead, "+tex"
	}
	subs := attnRowsSubs(tex)
	back := []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, in, in, in, in, in}
	backKV := []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, in, in, in, in, gpu.BindRead, gpu.BindReadWrite}
	decl := func(entry string, bind []gpu.BindKind) gpu.Kernel {
		return kernelNamed("attention_rows/"+entry+suffix, "attention_rows", entry, bind, subs)
	}
	return attnRowsSet{
		forward: decl("forward", []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindReadWrite, in, in, in}),
		backQ:   decl("backward_q", back),
		stats:   decl("row_stats", back),
		backKV:  decl("backward_kv", backKV),
	}
}

// attnRowsSubs generates the template values of one way of binding the
// inputs: their declarations and loads, and the row handles they take
// (rows4, flat). A texture holds a (B*T) x (C/4) tensor, texel (x, y) =
// columns 4x .. 4x+3 of row y, so a handle is the row and a load adds the
// head's first column hx; a buffer's handle is the flat vec4 index of the
// head's first element in the row.
func attnRowsSubs(tex bool) map[string]string {
	var in strings.Builder
	for _, x := range attnRowsInputs {
		if tex {
			fmt.Fprintf(&in, "@group(0) @binding(%d) var %s: texture_storage_2d<rgba32float, read>;\n", x.binding, x.name)
			fmt.Fprintf(&in, "fn %s(h: u32, c: u32) -> vec4<f32> {\n  return textureLoad(%s, vec2<i32>(i32(hx + c), i32(h)));\n}\n", x.ld, x.name)
		} else {
			fmt.Fprintf(&in, "@group(0) @binding(%d) var<storage, read> %s: array<vec4<f32>>;\n", x.binding, x.name)
			fmt.Fprintf(&in, "fn %s(h: u32, c: u32) -> vec4<f32> {\n  return %s[h + c];\n}\n", x.ld, x.name)
		}
	}
	subs := map[string]string{"CH": strconv.Itoa(attnRowsCH), "INPUTS": in.String(),
		"ROWS": "return y * (p.NH * p.HS4) + vec4<u32>(hx);", "FLAT": "return h;"}
	if tex {
		subs["ROWS"], subs["FLAT"] = "return y;", "return h * (p.NH * p.HS4) + hx;"
	}
	return subs
}

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

// attnRowsTextures lets the variant read its inputs from read-only storage
// textures where the device has them and the tensors fit a texture
// (attnRowsTexFits); tests turn it off to pin the buffer kernels.
var attnRowsTextures = true

// attnRowsTexFits reports whether the variant reads a (rows x C) input
// from a texture on d: storage textures present and the rows (rounded up
// to the texture cache's power of two) and C/4 within the texture limit.
func attnRowsTexFits(d *gpu.Device, rows, C int) bool {
	lim := int(d.Limits.MaxTextureDimension2D)
	return attnRowsTextures && d.StorageTextureRead && nextPow2(rows) <= lim && C/4 <= lim-matmulTexPadX
}

// attnRowsInputArgs returns the variant's kernel set and the arguments for
// its inputs: the buffers, or textures the buffers are copied into (by the
// matmul's pack, which copies where rows are 256-byte multiples and packs
// otherwise). Each input gets a texture of its own role in the matmul's
// texture cache, reused by every layer and step.
func attnRowsInputArgs(r *gpu.Recorder, rows, C int, ins []*gpu.Buffer, roles []string) (attnRowsSet, []gpu.Arg, error) {
	d := r.Device()
	args := make([]gpu.Arg, len(ins))
	if !attnRowsTexFits(d, rows, C) {
		for i, b := range ins {
			args[i] = b.Arg()
		}
		return attnRowsKernels[0], args, nil
	}
	s := matmulStateOf(d)
	for i, b := range ins {
		t, err := s.texture(d, "attn "+roles[i], C/4, rows)
		if err != nil {
			return attnRowsSet{}, nil, fmt.Errorf("attention %s texture: %w", roles[i], err)
		}
		side := matmulPackSide{dst: t, src: b.Arg(), sy: C, sx: 1, rows: rows, cols: C, w: C / 4, h: roundUp(rows, 4)}
		if err := matmulPack(r, &side); err != nil {
			return attnRowsSet{}, nil, err
		}
		args[i] = t.Arg()
	}
	return attnRowsKernels[1], args, nil
}

// attnRowsForward records the variant's forward; see AttentionForward.
func attnRowsForward(r *gpu.Recorder, out, lse, q, k, v *gpu.Buffer, B, T, NH, HS int) error {
	ks, in, err := attnRowsInputArgs(r, B*T, NH*HS, []*gpu.Buffer{q, k, v}, []string{"q", "k", "v"})
	if err != nil {
		return err
	}
	// Query block qb visits key blocks 0..qb: q·kᵀ and P·v, 2 FLOPs each.
	return attnRowsLaunch(r, ks.forward, B*NH, T, NH, HS, 4, func(blk int) int { return blk + 1 },
		append([]gpu.Arg{out.Arg(), lse.Arg()}, in...)...)
}

// attnRowsBackward records the variant's backward; see AttentionBackward.
// row_stats first stores D = rowsum(dout*out) into dq, which backward_kv
// reads; backward_q runs last and overwrites dq (it recomputes its own D).
func attnRowsBackward(r *gpu.Recorder, dq, dk, dv, dout, q, k, v, out, lse *gpu.Buffer, B, T, NH, HS int) error {
	d := r.Device()
	ks, in, err := attnRowsInputArgs(r, B*T, NH*HS, []*gpu.Buffer{q, k, v, dout, out},
		[]string{"q", "k", "v", "dout", "out"})
	if err != nil {
		return err
	}
	p, err := d.Pipeline(ks.stats)
	if err != nil {
		return err
	}
	g := d.Grid1D(B*NH*T, 64)
	if err := r.Dispatch(p, g, float64(2*B*NH*T*HS), gpu.Params(uint32(T), uint32(NH), uint32(0), uint32(B*NH),
		uint32(0), uint32(0), g.X, float32(0), uint32(HS/4), uint32(1), uint32(0), uint32(0)),
		append([]gpu.Arg{dq.Arg(), lse.Arg()}, in...)...); err != nil {
		return err
	}
	// Key block kb visits query blocks kb..nb-1: q·kᵀ, dout·vᵀ, dSᵀ·q for
	// dk and Pᵀ·dout for dv; D is read from dq (binding 7).
	nb := (T + attnRowsBlock - 1) / attnRowsBlock
	keys := func(blk int) int { return nb - blk }
	if err := attnRowsLaunch(r, ks.backKV, B*NH, T, NH, HS, 8, keys,
		append(append([]gpu.Arg{dk.Arg(), lse.Arg()}, in[:4]...), dq.Arg(), dv.Arg())...); err != nil {
		return err
	}
	// Query block qb visits key blocks 0..qb: q·kᵀ, dout·vᵀ and dS·k.
	return attnRowsLaunch(r, ks.backQ, B*NH, T, NH, HS, 6, func(blk int) int { return blk + 1 },
		append([]gpu.Arg{dq.Arg(), lse.Arg()}, in...)...)
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
