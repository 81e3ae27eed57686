package shaders

import (
	"fmt"
	"strings"

	"github.com/step-gpu/step-gpu/gpu"
)

// The texture-fed tile: each invocation computes matmulTexTM rows by
// 4*matmulTexTN4 columns of out, in workgroups of matmulTexWX x matmulTexWY
// invocations (8 = one SIMD vector on lavapipe). The size is bounded by
// compile time, not speed: lavapipe compiles a kernel inside the first
// submission that dispatches it, and with a cold Mesa shader cache
// (MESA_SHADER_CACHE_DISABLE=true) the 32x16 and 16x32 tiles took longer
// than the 5 s watchdog and crashed the process (32x16 again, re-measured
// at load ~2), while 16x16 compiled in 2.1-2.6 s and 8x16 in 0.65 s (2
// shared cores, load ~2.5). At 1024^3 NT
// 16x16 ran at ~30 GFLOP/s against ~20-24 for 8x16 under the same load, and
// unrolling the four K steps of a texel beat looping over them (~30 vs ~18).
// matmulTexWarm compiles the kernel in a submission of its own.
//
// What bounds this kernel on lavapipe (Mesa 22.3, measured 2026-11-27 by
// disassembling the JIT code under perf and timing variants; the machine was
// shared at load 4-8, so rates below are per CPU second x 2 cores, 1024^3):
// every textureLoad is a call of ~100+ instructions (per-lane level and size
// computation, bounds check, eight 16-byte loads, a 4x8 transpose), whether or
// not the lanes load the same texel, so speed follows FMAs per textureLoad.
// (That is a sampled texture's load. A read-only storage texture's costs about
// a quarter of it, measured 2026-11-28 (docs/PLATFORM.md); the same kernels
// read those where the device has them, and 16x16 stayed the best tile there
// too, against 8x16 to 32x16. The notes below are from the sampled kernels.)
// Larger tiles raise that ratio but spill more: the accumulators live on the
// stack (32x24 x 8 lanes = 24 KB) and the unrolled loop body of a 32x24 tile
// is ~90 KB of machine code, beyond the 32 KB L1i. An outer-product layout
// was tried (op(A) packed transposed, texel = 4 rows at one k; per k, tm/4 +
// tn4 loads and a rank-1 update; tiles 16x16 to 32x32, K unrolled 1, 2 or
// 4): with its texture loads replaced by arithmetic it ran 108-121 GFLOP/s
// at 16x16 but 76-81 at 32x24, with the loads both ran 31-41 kernel-only,
// and end to end (with its extra pack of A in NN and NT) NN 27-35, NT 28-33,
// TN 29-31 against NN 29-35, NT 27-35, TN 27-30 for this kernel, over both
// issue shapes in the same runs. Its 32x24 tile took 94 s to compile cold
// with the res loop below, 139 s with unrolled guarded stores and 6.6 s
// staging the tile through workgroup memory (at load ~6; this kernel:
// 2.4-2.7 s), so it was not kept. Also slower: workgroups not 8 wide along
// x (4x2: 4x slower, 1x8: 7x; llvmpipe vectorises along x only),
// interleaving the lanes' columns (-10%), reading op(A) from a storage
// buffer (-30%); making op(A)'s addresses provably workgroup-uniform changed
// nothing (texture loads are never scalarised, and a storage load is a
// per-lane loop either way).
const (
	matmulTexTM  = 16
	matmulTexTN4 = 4
	matmulTexWX  = 8
	matmulTexWY  = 1
)

var (
	matmulTexSrc = own("matmul_tex")
	// The five variants, in the order matmulTexture unpacks their pipelines.
	matmulTexVariants = []string{"tiled", "tiled_sa", "tiled_sa_bt", "tiled_at", "tiled_bt"}
	// matmulTexKernels holds every variant for each way of binding the
	// textures: [0] sampled, [1] read-only storage (matmulTexStorage).
	matmulTexKernels = [2][]gpu.Kernel{matmulTexKernelSet(false), matmulTexKernelSet(true)}
)

// matmulTexKernelSet returns the five variants of the tiled entry reading
// their textures sampled or, with storage, as read-only storage textures.
func matmulTexKernelSet(storage bool) []gpu.Kernel {
	tex := gpu.BindTexture
	if storage {
		tex = gpu.BindStorageTextureRead
	}
	var ks []gpu.Kernel
	for _, v := range matmulTexVariants {
		// Bindings: 0 params, 1 out, 2 op(A) as a texture or (the _sa
		// variants) a storage buffer, 3 op(B)'s texture.
		bind := []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, tex, tex}
		if strings.HasPrefix(v, "tiled_sa") {
			bind[2] = gpu.BindRead
		}
		ks = append(ks, matmulTexKernel(v, bind, storage))
	}
	return ks
}

// matmulTexKernel is the tiled entry with the body of one variant, named
// after it (its pipelines, errors and profile lines say which variant ran,
// and "+storage" marks the read-only storage texture binding).
func matmulTexKernel(variant string, bind []gpu.BindKind, storage bool) gpu.Kernel {
	name := "matmul_tex/" + variant
	if storage {
		name += "+storage"
	}
	return kernelNamed(name, "matmul_tex", "tiled", bind, matmulTexSubs(variant, matmulTexTM, matmulTexTN4, matmulTexWX, matmulTexWY, storage))
}

// matmulTexDirectA lets the texture path read row-major op(A) blocks
// straight from their buffer (tiled_sa) instead of packing them; tests
// turn it off to pin both kernels to the simple path.
var matmulTexDirectA = true

// matmulTexSubs generates the unrolled tile of one of the five variants:
// the accumulator declarations, the body of one K4 step for each (load
// 4*tn4 texels of op(B) and tm of op(A), or tm/4*4 in the transposed
// layout, then 4*tm*tn4 vec4 FMAs) and the guarded stores. Every variant
// loads as many texels per step; the transposed ones pick components
// instead (free on lavapipe, where a vec4 is four SIMD registers).
func matmulTexSubs(variant string, tm, tn4, wx, wy int, storage bool) map[string]string {
	// A sampled texture's textureLoad names the mip level; a storage
	// texture's has none.
	texType, level := "texture_2d<f32>", ", 0"
	if storage {
		texType, level = "texture_storage_2d<rgba32float, read>", ""
	}
	var decl, apre, store strings.Builder
	for i := 0; i < tm; i++ {
		for j := 0; j < tn4; j++ {
			fmt.Fprintf(&decl, "  var c%d_%d = vec4<f32>(0.0);\n", i, j)
			fmt.Fprintf(&store, "  res[%d] = c%d_%d;\n", i*tn4+j, i, j)
		}
		fmt.Fprintf(&apre, "  let ar%d = p.a_base4 + min(u32(row + %d), p.M - 1u) * p.a_sm4;\n", i, i)
	}
	comp := []string{"x", "y", "z", "w"}
	// op(B): texel (x, k) holds columns 4x..4x+3 at k (tb), or texel (k/4,
	// n) holds k..k+3 of column n (bt, op(B)'s columns contiguous).
	var bRows, bCols strings.Builder
	for kk := 0; kk < 4; kk++ {
		for j := 0; j < tn4; j++ {
			fmt.Fprintf(&bRows, "    let b%d_%d = textureLoad(tb, vec2<i32>(col4 + %d, k + %d)%s);\n", kk, j, j, kk, level)
		}
	}
	for j := 0; j < tn4; j++ {
		for jj := 0; jj < 4; jj++ {
			fmt.Fprintf(&bCols, "    let bt%d_%d = textureLoad(tb, vec2<i32>(kt, (col4 + %d) * 4 + %d)%s);\n", j, jj, j, jj, level)
		}
	}
	for kk := 0; kk < 4; kk++ {
		for j := 0; j < tn4; j++ {
			fmt.Fprintf(&bCols, "    let b%d_%d = vec4<f32>(bt%d_0.%s, bt%d_1.%s, bt%d_2.%s, bt%d_3.%s);\n",
				kk, j, j, comp[kk], j, comp[kk], j, comp[kk], j, comp[kk])
		}
	}
	// op(A): row i's k..k+3 as one texel (ta) or vec4 of its storage row
	// (sa), or texel (m/4, k) holding rows m..m+3 at k (at, op(A)'s columns
	// contiguous).
	var aCols strings.Builder
	for ii := 0; ii < tm/4; ii++ {
		for kk := 0; kk < 4; kk++ {
			fmt.Fprintf(&aCols, "    let at%d_%d = textureLoad(ta, vec2<i32>(row / 4 + %d, k + %d)%s);\n", ii, kk, ii, kk, level)
		}
	}
	fmas := func(a func(i, kk int) string) string {
		var out strings.Builder
		for i := 0; i < tm; i++ {
			for j := 0; j < tn4; j++ {
				e := fmt.Sprintf("c%d_%d", i, j)
				for kk := 0; kk < 4; kk++ {
					e = fmt.Sprintf("fma(vec4<f32>(%s), b%d_%d, %s)", a(i, kk), kk, j, e)
				}
				fmt.Fprintf(&out, "    c%d_%d = %s;\n", i, j, e)
			}
		}
		return out.String()
	}
	rowLoads := func(src string) string {
		var out strings.Builder
		for i := 0; i < tm; i++ {
			if src == "ta" {
				fmt.Fprintf(&out, "    let a%d = textureLoad(ta, vec2<i32>(kt, row + %d)%s);\n", i, i, level)
			} else {
				fmt.Fprintf(&out, "    let a%d = arows[ar%d + u32(kt)];\n", i, i)
			}
		}
		return out.String()
	}
	aRow := func(i, kk int) string { return fmt.Sprintf("a%d.%s", i, comp[kk]) }
	aCol := func(i, kk int) string { return fmt.Sprintf("at%d_%d.%s", i/4, kk, comp[i%4]) }
	// One guarded store in a loop over the tile, not one per accumulator:
	// every storage access is a per-lane loop on lavapipe, and unrolling
	// them all multiplied the compile time.
	fmt.Fprintf(&store, "  for (var t = 0; t < %d; t++) {\n", tm*tn4)
	fmt.Fprintf(&store, "    store4(u32(row + t / %d), u32(col4 + t %% %d) * 4u, res[t]);\n  }\n", tn4, tn4)
	fmt.Fprintf(&decl, "  var res: array<vec4<f32>, %d>;\n", tm*tn4)
	bodies := map[string]string{
		"tiled":       bRows.String() + rowLoads("ta") + fmas(aRow),
		"tiled_sa":    bRows.String() + rowLoads("sa") + fmas(aRow),
		"tiled_sa_bt": bCols.String() + rowLoads("sa") + fmas(aRow),
		"tiled_bt":    bCols.String() + rowLoads("ta") + fmas(aRow),
		"tiled_at":    bRows.String() + aCols.String() + fmas(aCol),
	}
	body, ok := bodies[variant]
	if !ok {
		panic("matmul_tex: unknown variant " + variant)
	}
	if !strings.HasPrefix(variant, "tiled_sa") {
		apre.Reset()
	}
	return map[string]string{
		"TM": fmt.Sprint(tm), "TN4": fmt.Sprint(tn4), "WX": fmt.Sprint(wx), "WY": fmt.Sprint(wy),
		"DECL": decl.String(), "STORE": store.String(), "APRE": apre.String(), "BODY": body, "TEX": texType,
	}
}

// matmulTexPadX widens every packing texture by 4 texels (64 bytes, one
// cache line) past its power of two. With power-of-two widths a texture's
// rows lie a multiple of 4 KB apart, and the rows an invocation reads in one
// step (16 of op(A), or 16 of op(B) in the bt layout) fall into the same set
// of a CPU's L1 cache, which holds 8: NT on lavapipe ran at 40.9 GFLOP/s
// unpadded against 54.0 padded at 1024^3, 42.8 against 51.9 at 4096 x 512 x
// 2048, TN 5-7% faster, NN 1-2% (storage textures, alternating in one
// process, 2026-11-28; sampled textures: NT 32.5 against 36.0). Widths are
// therefore never powers of two (matmulTexSize), so llvmpipe's
// specialisation on power-of-two sizes sees one kind per role.
const matmulTexPadX = 4

// matmulTexSize rounds a packing texture's size up so that nearby shapes
// share textures and every texture of a role has one kind of size: llvmpipe
// specialises a kernel's texture reads on whether each dimension is a power
// of two and recompiles the whole kernel (seconds, inside a submission)
// when that changes. Heights become powers of two (at least 64, at most
// lim); widths a power of two (at least 64) plus matmulTexPadX, or lim -
// matmulTexPadX where that would pass the limit (lim is a power of two on
// every device, so neither is one). The plan keeps widths within lim -
// matmulTexPadX. The padding is scratch memory only.
func matmulTexSize(w, h, lim int) (int, int) {
	w = nextPow2(max(w, 64)) + matmulTexPadX
	if w > lim {
		w = lim - matmulTexPadX
	}
	return w, min(nextPow2(max(h, 64)), lim)
}

// texture returns the cached packing texture for a role ("a", "at", "b" or
// "bt") of at least w x h texels, allocating it on first use at
// matmulTexSize. The cache also holds attention's input textures
// (attnRowsTexture, roles "attn q" and so on).
func (s *matmulState) texture(d *gpu.Device, role string, w, h int) (*gpu.Texture, error) {
	w, h = matmulTexSize(w, h, int(d.Limits.MaxTextureDimension2D))
	key := matmulTexKey{role, uint32(w), uint32(h)}
	if t, ok := s.tex[key]; ok {
		return t, nil
	}
	t, err := d.NewTexture(fmt.Sprintf("matmul pack %s %dx%d", role, w, h), gpu.CatCache, uint32(w), uint32(h))
	if err != nil {
		return nil, err
	}
	s.tex[key] = t
	return t, nil
}

// matmulTexture records the product with the texture-fed kernels, binding
// the textures sampled or (storage) as read-only storage textures. Per
// block, op(B)'s block goes into a texture when the K chunk or column band
// changes: copied as it lies in memory where its rows (tb, NN and TN) or
// columns (bt, NT) are contiguous and aligned for a copy, else packed by the
// pack kernel (zero-padded, tb layout). op(A)'s block is then copied into
// ta where its rows allow (tiled, tiled_bt: NN and NT), else read in place
// from storage (tiled_sa, tiled_sa_bt: rows on vec4 bounds, whole vec4s of
// K), else copied by columns (at, TN), else packed (tiled). Copies cost
// little (~24 GB/s on lavapipe, against ~1 GB/s for the pack kernel, whose
// time is mostly texture stores there).
func matmulTexture(r *gpu.Recorder, op *matmulOp, storage bool) error {
	d := r.Device()
	s := matmulStateOf(d)
	set := matmulTexSet(storage)
	if s.pipes[set] == nil {
		// Resolved once per device: a pipeline-cache key spells out the
		// generated tile bodies (tens of KB), too much to rebuild per product.
		var pipes []*gpu.Pipeline
		for _, k := range matmulTexKernels[set] {
			p, err := d.Pipeline(k)
			if err != nil {
				return err
			}
			pipes = append(pipes, p)
		}
		s.pipes[set] = pipes
	}
	ps := s.pipes[set]
	tiled, tiledSA, tiledSABT, tiledAT, tiledBT := ps[0], ps[1], ps[2], ps[3], ps[4]
	const tmWG, tnWG = matmulTexTM * matmulTexWY, 4 * matmulTexTN4 * matmulTexWX
	lim := int(d.Limits.MaxTextureDimension2D)
	wgLim := int(d.Limits.MaxComputeWorkgroupsPerDimension)
	size, err := op.plan(d, tmWG, tnWG, matmulTexBudgets(d), func(bm, bn, bk int) int {
		bmPad, bnPad := roundUp(bm, tmWG), roundUp(bn, tnWG)
		switch {
		case bmPad > lim || bmPad/tmWG > wgLim:
			return 0
		case bnPad/4 > lim-matmulTexPadX || bnPad/tnWG > wgLim:
			// op(B)'s tb width (every other width is at most a quarter
			// of a height checked here).
			return 1
		case roundUp(bk, 4) > lim:
			return 2
		}
		return -1
	})
	if err != nil {
		return err
	}
	// tex returns the cached texture of a role, sized for the largest block.
	tex := func(role string, w, h int) (*gpu.Texture, error) {
		t, err := s.texture(d, role, w, h)
		if err != nil {
			return nil, fmt.Errorf("matmul %v: %w", op.layout, err)
		}
		return t, nil
	}
	bk4Max, bmPadMax, bnPadMax := (size.bk+3)/4, roundUp(size.bm, tmWG), roundUp(size.bn, tnWG)
	packed, bT := matmulBlock{k0: -1}, false
	var tb *gpu.Texture
	for _, blk := range op.blocks(size) {
		bmPad, bnPad, bk4 := roundUp(blk.bm, tmWG), roundUp(blk.bn, tnWG), (blk.bk+3)/4
		aArg, aBase := matmulBind(d, op.a, blk.m0*op.sam+blk.k0*op.sak, matmulSpan(blk.bm, blk.bk, op.sam, op.sak))
		aDirect := matmulTexDirectA && op.sak == 1 && (op.sam%4 == 0 || blk.bm == 1) && aBase%4 == 0 && blk.bk%4 == 0
		// ta texel (x, y) = A[m0+y, k0+4x..4x+3]; at texel (x, y) =
		// A[m0+4x..4x+3, k0+y].
		aRows := matmulPackSide{src: aArg, base: int(aBase), sy: op.sam, sx: op.sak, rows: blk.bm, cols: blk.bk,
			w: bk4, h: bmPad}
		aCols := matmulPackSide{src: aArg, base: int(aBase), sy: op.sak, sx: op.sam, rows: blk.bk, cols: blk.bm,
			w: bmPad / 4, h: 4 * bk4}
		aCopy := aRows.copyable()
		// op(B) in the bt layout needs op(A) copied (tiled_bt) or read in
		// place (tiled_sa_bt).
		if blk.k0 != packed.k0 || blk.n0 != packed.n0 || (bT && !aCopy && !aDirect) {
			arg, base := matmulBind(d, op.b, blk.k0*op.sbk+blk.n0*op.sbn, matmulSpan(blk.bk, blk.bn, op.sbk, op.sbn))
			// tb texel (x, y) = B[k0+y, n0+4x..4x+3]; bt texel (x, y) =
			// B[k0+4x..4x+3, n0+y].
			rows := matmulPackSide{src: arg, base: int(base), sy: op.sbk, sx: op.sbn, rows: blk.bk, cols: blk.bn,
				w: bnPad / 4, h: 4 * bk4}
			cols := matmulPackSide{src: arg, base: int(base), sy: op.sbn, sx: op.sbk, rows: blk.bn, cols: blk.bk,
				w: bk4, h: bnPad}
			side := &rows
			bT = (aCopy || aDirect) && bnPadMax <= lim && !rows.copyable() && cols.copyable()
			if bT {
				side = &cols
				tb, err = tex("bt", bk4Max, bnPadMax)
			} else {
				tb, err = tex("b", bnPadMax/4, 4*bk4Max)
			}
			if err != nil {
				return err
			}
			side.dst = tb
			if err := matmulPack(r, side); err != nil {
				return err
			}
			packed = blk
		}
		oArg, oBase := op.bindOut(d, blk)
		g := gpu.Grid{X: uint32(bnPad / tnWG), Y: uint32(bmPad / tmWG), Z: 1}
		// The work estimate counts the padded tile the kernel really computes.
		work := 2 * float64(bmPad) * float64(bnPad) * float64(4*bk4)
		params := gpu.Params(uint32(blk.bm), uint32(blk.bn), uint32(bk4), op.accFlag(blk), oBase, uint32(op.N),
			aBase/4, uint32(op.sam/4))
		var err error
		switch {
		case aCopy || (!aDirect && !(aCols.copyable() && !bT)):
			// op(A) rows into ta: copied, or packed when nothing else fits.
			// A copied operand beat reading it in place (tiled_sa) on
			// lavapipe: 1024^3 NN 33-36 against 28-30 GFLOP/s.
			if aRows.dst, err = tex("a", bk4Max, bmPadMax); err != nil {
				return err
			}
			if err := matmulPack(r, &aRows); err != nil {
				return err
			}
			p := tiled
			if bT {
				p = tiledBT
			}
			err = r.Dispatch(p, g, work, params, oArg, aRows.dst.Arg(), tb.Arg())
		case aDirect:
			// op(A) rows are whole vec4s from aBase: read them in place.
			p := tiledSA
			if bT {
				p = tiledSABT
			}
			err = r.Dispatch(p, g, work, params, oArg, aArg, tb.Arg())
		default:
			// op(A) columns copied into at (TN).
			if aCols.dst, err = tex("at", bmPadMax/4, 4*bk4Max); err != nil {
				return err
			}
			if err := matmulPack(r, &aCols); err != nil {
				return err
			}
			err = r.Dispatch(tiledAT, g, work, params, oArg, aCols.dst.Arg(), tb.Arg())
		}
		if err != nil {
			return fmt.Errorf("matmul %v %dx%dx%d: %w", op.layout, op.M, op.N, op.K, err)
		}
	}
	return nil
}

// matmulTexBudgets is how many submit budgets one dispatch of the texture
// kernels may hold on d: matmulCPUBudgets on a CPU adapter (where it was
// measured), else one.
func matmulTexBudgets(d *gpu.Device) float64 {
	if d.IsCPU() {
		return matmulCPUBudgets
	}
	return 1
}

// nextPow2 returns the smallest power of two >= n (n >= 1).
func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
