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
// are load-bound, so forward+backward ran 2.0-2.8x faster (d512 shapes,
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
	// by backward_kv), 8 dv (backward_kv). attnRowsKernels[0] reads q, k, v
	// and dout from storage buffers, [1] from read-only storage textures
	// (attnRowsTextures); out and D are always buffers.
	attnRowsKernels = [2]attnRowsSet{attnRowsKernelSet(false), attnRowsKernelSet(true)}
)

// attnRowsSet is the variant's four kernels for one way of binding inputs.
type attnRowsSet struct{ forward, backQ, stats, backKV gpu.Kernel }

// attnRowsPipes is an attnRowsSet's pipelines at one column chunk.
type attnRowsPipes struct{ forward, backQ, stats, backKV *gpu.Pipeline }

// attnRowsInputs are the inputs that may be textures: WGSL name, load
// function and binding, in binding order.
var attnRowsInputs = []struct {
	name, ld string
	binding  int
}{{"q", "ld_q", 3}, {"k", "ld_k", 4}, {"v", "ld_v", 5}, {"dout", "ld_dout", 6}}

// attnRowsKernelSet declares the four kernels reading q, k, v and dout
// from storage buffers or (tex) from read-only storage textures. row_stats
// reads only dout of them, so its q, k and v slots stay buffers: a layout's
// textures count against maxStorageTexturesPerShaderStage whether or not
// the entry point reads them.
func attnRowsKernelSet(tex bool) attnRowsSet {
	in := gpu.BindRead
	suffix := ""
	if tex {
		in, suffix = gpu.BindStorageTextureRead, "+tex"
	}
	subs := attnRowsSubs(tex)
	u, rw, rd := gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead
	decl := func(entry string, bind ...gpu.BindKind) gpu.Kernel {
		return kernelNamed("attention_rows/"+entry+suffix, "attention_rows", entry, bind, subs)
	}
	return attnRowsSet{
		forward: decl("forward", u, rw, rw, in, in, in),
		backQ:   decl("backward_q", u, rw, rd, in, in, in, in, rd),
		stats:   decl("row_stats", u, rw, rd, rd, rd, rd, in, rd),
		backKV:  decl("backward_kv", u, rw, rd, in, in, in, in, rd, rw),
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

// attnRowsResolve returns the pipelines of kernel set attnRowsKernels[set]
// at the column chunk heads of HS4 vec4s use, resolved once per device (a
// cache key spells out the generated loads; attention runs twice per layer
// per step).
func attnRowsResolve(d *gpu.Device, set, HS4 int) (attnRowsPipes, error) {
	st := matmulStateOf(d)
	key := [2]int{set, attnRowsChunk(HS4)}
	if ps, ok := st.attnPipes[key]; ok {
		return ps, nil
	}
	ks := attnRowsKernels[set]
	ch := map[string]string{"CH": strconv.Itoa(key[1])}
	var ps attnRowsPipes
	for _, x := range []struct {
		k gpu.Kernel
		p **gpu.Pipeline
	}{{ks.forward, &ps.forward}, {ks.backQ, &ps.backQ}, {ks.stats, &ps.stats}, {ks.backKV, &ps.backKV}} {
		p, err := d.Pipeline(with(x.k, ch))
		if err != nil {
			return attnRowsPipes{}, err
		}
		*x.p = p
	}
	if st.attnPipes == nil {
		st.attnPipes = map[[2]int]attnRowsPipes{}
	}
	st.attnPipes[key] = ps
	return ps, nil
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
// textures where the device can (attnRowsTexFits); tests turn it off to
// pin the buffer kernels.
var attnRowsTextures = true

// attnRowsTexWidth is the width of an input's texture for C columns: C/4
// texels and matmulTexPadX more, so rows 4 KB apart (C = 1024) do not all
// fall into one set of a CPU's L1 cache (docs/PLATFORM.md). Widths and
// heights are fixed per model, so unlike the matmul's they are not
// rounded to share textures; heights are powers of two (attnRowsTexture).
func attnRowsTexWidth(C int) int { return C/4 + matmulTexPadX }

// attnRowsTexFits reports whether the variant may read a (rows x C) input
// from a texture on d: storage textures usable there (storageTexUsable),
// four of them per kernel within the device's limit, and the texture
// within the size limit.
func attnRowsTexFits(d *gpu.Device, rows, C int) bool {
	lim := int(d.Limits.MaxTextureDimension2D)
	return attnRowsTextures && storageTexUsable(d) && d.Limits.MaxStorageTexturesPerShaderStage >= 4 &&
		nextPow2(rows) <= lim && attnRowsTexWidth(C) <= lim
}

// attnRowsTexture returns the cached texture of one attention input role,
// allocating it on first use in the per-device texture cache (gpu.CatCache;
// four per device: q, k, v and dout, reused by every layer and step).
func attnRowsTexture(d *gpu.Device, role string, rows, C int) (*gpu.Texture, error) {
	s := matmulStateOf(d)
	w, h := attnRowsTexWidth(C), nextPow2(max(rows, 4))
	key := matmulTexKey{"attn " + role, uint32(w), uint32(h)}
	if t, ok := s.tex[key]; ok {
		return t, nil
	}
	t, err := d.NewTexture(fmt.Sprintf("attention %s %dx%d", role, w, h), gpu.CatCache, uint32(w), uint32(h))
	if err != nil {
		return nil, fmt.Errorf("attention %s texture: %w", role, err)
	}
	s.tex[key] = t
	return t, nil
}

// attnRowsArgs returns the pipelines and the arguments for q, k, v and
// (backward) dout: the buffers themselves, or textures the buffers are
// copied into by the matmul's pack (a copy where C is a multiple of 64 and
// B*T of 4, else the pack kernel). Where a texture kernel cannot be built
// the device's storage textures are marked unusable (storageTexFailed) and
// the buffer kernels run instead.
func attnRowsArgs(r *gpu.Recorder, rows, C, HS int, ins ...*gpu.Buffer) (attnRowsPipes, []gpu.Arg, error) {
	d := r.Device()
	args := make([]gpu.Arg, len(ins))
	for i, b := range ins {
		args[i] = b.Arg()
	}
	if attnRowsTexFits(d, rows, C) {
		ps, err := attnRowsResolve(d, 1, HS/4)
		if err == nil {
			for i, b := range ins {
				t, err := attnRowsTexture(d, attnRowsInputs[i].name, rows, C)
				if err != nil {
					return attnRowsPipes{}, nil, err
				}
				side := matmulPackSide{dst: t, src: b.Arg(), sy: C, sx: 1, rows: rows, cols: C, w: C / 4, h: roundUp(rows, 4)}
				if err := matmulPack(r, &side); err != nil {
					return attnRowsPipes{}, nil, err
				}
				args[i] = t.Arg()
			}
			return ps, args, nil
		}
		storageTexFailed(d, err)
	}
	ps, err := attnRowsResolve(d, 0, HS/4)
	return ps, args, err
}

// attnRowsForward records the variant's forward; see AttentionForward.
func attnRowsForward(r *gpu.Recorder, out, lse, q, k, v *gpu.Buffer, B, T, NH, HS int) error {
	ps, in, err := attnRowsArgs(r, B*T, NH*HS, HS, q, k, v)
	if err != nil {
		return err
	}
	// Query block qb visits key blocks 0..qb: q·kᵀ and P·v, 2 FLOPs each.
	return attnRowsLaunch(r, ps.forward, B*NH, T, NH, HS, 4, func(blk int) int { return blk + 1 },
		append([]gpu.Arg{out.Arg(), lse.Arg()}, in...)...)
}

// attnRowsBackward records the variant's backward; see AttentionBackward.
// row_stats first stores D = rowsum(dout*out) into dq, which backward_kv
// reads; backward_q runs last and overwrites dq (it recomputes its own D).
func attnRowsBackward(r *gpu.Recorder, dq, dk, dv, dout, q, k, v, out, lse *gpu.Buffer, B, T, NH, HS int) error {
	d := r.Device()
	ps, in, err := attnRowsArgs(r, B*T, NH*HS, HS, q, k, v, dout)
	if err != nil {
		return err
	}
	// row_stats binds q, k and v as buffers whatever the set (it reads
	// none of them) and dout as the set binds it.
	g := d.Grid1D(B*NH*T, 64)
	if err := r.Dispatch(ps.stats, g, float64(2*B*NH*T*HS), gpu.Params(uint32(T), uint32(NH), uint32(0), uint32(B*NH),
		uint32(0), uint32(0), g.X, float32(0), uint32(HS/4), uint32(1), uint32(0), uint32(0)),
		dq.Arg(), lse.Arg(), q.Arg(), k.Arg(), v.Arg(), in[3], out.Arg()); err != nil {
		return err
	}
	// Key block kb visits query blocks kb..nb-1: q·kᵀ, dout·vᵀ, dSᵀ·q for
	// dk and Pᵀ·dout for dv; D is read from dq (binding 7).
	nb := (T + attnRowsBlock - 1) / attnRowsBlock
	keys := func(blk int) int { return nb - blk }
	if err := attnRowsLaunch(r, ps.backKV, B*NH, T, NH, HS, 8, keys,
		append(append([]gpu.Arg{dk.Arg(), lse.Arg()}, in...), dq.Arg(), dv.Arg())...); err != nil {
		return err
	}
	// Query block qb visits key blocks 0..qb: q·kᵀ, dout·vᵀ and dS·k.
	return attnRowsLaunch(r, ps.backQ, B*NH, T, NH, HS, 6, func(blk int) int { return blk + 1 },
		append(append([]gpu.Arg{dq.Arg(), lse.Arg()}, in...), out.Arg())...)
}

// attnRowsLaunch records kernel k over every (pair, column chunk, block) in
// dispatches bounded like attnLaunch's. A block step does ops*4*4*HS FLOPs
// per chunk (each chunk recomputes the full-HS scores; counted in full).
func attnRowsLaunch(r *gpu.Recorder, p *gpu.Pipeline, nBH, T, NH, HS, ops int, steps func(blk int) int, args ...gpu.Arg) error {
	d := r.Device()
	HS4 := HS / 4
	ch := attnRowsChunk(HS4)
	nc := (HS4 + ch - 1) / ch
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
