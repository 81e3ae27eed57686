package shaders

import (
	"fmt"
	"math"
	"sync"

	"github.com/step-gpu/step-gpu/gpu"
)

// WeightFormat is how a frozen weight is stored on the device.
type WeightFormat int

const (
	// F32 stores one float32 per element.
	F32 WeightFormat = iota
	// Half stores IEEE binary16 values packed two per u32 word (element e is
	// half e%2 of word e/2, low half first), as pack2x16float writes them:
	// the f16 type is rejected by this wgpu-native (WEBGPU.md).
	Half
)

// String names the format.
func (f WeightFormat) String() string {
	switch f {
	case F32:
		return "f32"
	case Half:
		return "half"
	}
	return fmt.Sprintf("WeightFormat(%d)", int(f))
}

// Bytes returns the bytes n elements take in the format.
func (f WeightFormat) Bytes(n int) uint64 {
	if f == Half {
		return 4 * uint64((n+1)/2)
	}
	return 4 * uint64(n)
}

const (
	// loraWG is the workgroup size of the tiled product kernels (64 tiles
	// of 4x4 or 8x8 outputs) and of the elementwise ones.
	loraWG = 64
	// loraTNWG is the workgroup size of the tn kernel: loraTNWG/loraSplit
	// tiles, each summed by loraSplit invocations.
	loraTNWG  = 64
	loraSplit = 16
	// loraKChunk bounds the first product's reduction per dispatch: 16,384
	// quad iterations, so with the second product (at most loraMaxR/4) an
	// invocation stays far below lavapipe's 65,535 loop iterations.
	loraKChunk = 65536
	// loraNChunk bounds the rows one tn dispatch reduces over: 16,384
	// iterations per invocation.
	loraNChunk = loraSplit * 16384
	// loraMaxR bounds the rank: it is a reduction length of the second
	// products (R/4 iterations) and of the merge (2R iterations).
	loraMaxR = 16384
)

var (
	loraSrc = own("lora")
	// loraSubs are the default template values; V and WF are set per dispatch.
	loraSubs = map[string]string{"WG": fmt.Sprint(loraWG), "TNWG": fmt.Sprint(loraTNWG),
		"TNRED": fmt.Sprint(4 * loraTNWG), "SPLIT": fmt.Sprint(loraSplit), "V": "s", "WF": "f"}
	loraBind6 = []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead, gpu.BindRead, gpu.BindRead}
	loraBind4 = []gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead, gpu.BindRead}
	kLoRANT   = kernel("lora", "nt", loraBind6, loraSubs)
	kLoRANN   = kernel("lora", "nn", loraBind6, loraSubs)
	kLoRANT8  = kernel("lora", "nt8", loraBind6, loraSubs)
	kLoRANN8  = kernel("lora", "nn8", loraBind6, loraSubs)
	kLoRATN   = kernel("lora", "tn", loraBind4, loraSubs)
	kLoRAMF32 = kernel("lora", "merge_f32", loraBind4, loraSubs)
	kLoRAMH   = kernel("lora", "merge_half", loraBind4, loraSubs)
	kLoRAPack = kernel("lora", "pack_half",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, loraSubs)
	kLoRAUnpack = kernel("lora", "unpack_half",
		[]gpu.BindKind{gpu.BindUniform, gpu.BindReadWrite, gpu.BindRead}, loraSubs)
)

// loraScalarOnly forces the scalar quad loaders everywhere; tests set it to
// pin the vector loaders to the simple ones.
var loraScalarOnly bool

// loraSubsFor returns the template values of a dispatch: vector loaders
// when every row length the kernel reads is a multiple of 4, else scalar
// ones (one choice per dispatch keeps the variants, and their compile time,
// few), and the frozen weight's format.
func loraSubsFor(wf WeightFormat, rows ...int) map[string]string {
	v := "v"
	for _, n := range rows {
		if n%4 != 0 || loraScalarOnly {
			v = "s"
		}
	}
	f := "f"
	if wf == Half {
		f = "h"
	}
	return map[string]string{"V": v, "WF": f}
}

// loraCompiled records the pipelines that have run once. Lavapipe compiles
// a pipeline inside the first submission that uses it, and the 8x8 tile
// kernels take up to ~1.4 s of CPU to compile there (measured), so their
// first dispatch gets a submission of its own rather than joining a full
// one near the 5 s watchdog (WEBGPU.md trap 1).
var loraCompiled = struct {
	sync.Mutex
	seen map[*gpu.Pipeline]bool
}{seen: map[*gpu.Pipeline]bool{}}

// loraDispatch records a dispatch, alone in its submission on the
// pipeline's first use.
func loraDispatch(r *gpu.Recorder, p *gpu.Pipeline, g gpu.Grid, work float64, params []byte, args ...gpu.Arg) error {
	loraCompiled.Lock()
	first := !loraCompiled.seen[p]
	loraCompiled.seen[p] = true
	loraCompiled.Unlock()
	if !first {
		return r.Dispatch(p, g, work, params, args...)
	}
	if err := r.Flush(); err != nil {
		return err
	}
	if err := r.Dispatch(p, g, work, params, args...); err != nil {
		return err
	}
	return r.Flush()
}

// loraParams mirrors the WGSL Params struct.
func loraParams(M, P, K1, K2, m0, m1, k0, k1, r1 int, nwgX uint32, accum bool, alpha1, alpha2 float32) []byte {
	acc := uint32(0)
	if accum {
		acc = 1
	}
	return gpu.Params(uint32(M), uint32(P), uint32(K1), uint32(K2), uint32(m0), uint32(m1), uint32(k0), uint32(k1),
		uint32(r1), nwgX, acc, alpha1, alpha2, uint32(0), uint32(0), uint32(0))
}

// loraProduct is one nt or nn product: out (M, P) = alpha1·L1·op(W) +
// alpha2·L2·op(W2), or out += the same when accum is set. K2 = 0 means no
// second product (l2 and w2 may then be nil).
type loraProduct struct {
	out, l1, w, l2, w2 *gpu.Buffer
	M, P, K1, K2       int
	alpha1, alpha2     float32
	accum              bool
	wf                 WeightFormat
}

// loraTiled records an nt product (an nn one when nn is set) in row bands,
// so that each dispatch's work stays below a quarter of the submission
// budget, and in reduction chunks of loraKChunk (the loop bound); later
// chunks accumulate. Shapes whose rows are all multiples of 4 run the 8x8
// tile kernels with vector loads, others the 4x4 ones with scalar loads.
func loraTiled(r *gpu.Recorder, pr loraProduct, nn bool) error {
	d := r.Device()
	if pr.l2 == nil {
		pr.l2, pr.w2 = pr.l1, pr.l1
	}
	// nt reads rows of K1 and K2 elements; nn also rows of P.
	k, k8, subs := kLoRANT, kLoRANT8, loraSubsFor(pr.wf, pr.K1, pr.K2)
	if nn {
		k, k8, subs = kLoRANN, kLoRANN8, loraSubsFor(pr.wf, pr.K1, pr.K2, pr.P)
	}
	tile := 4
	if subs["V"] == "v" {
		k, tile = k8, 8
	}
	p, err := d.Pipeline(with(k, subs))
	if err != nil {
		return err
	}
	perRow := 2 * float64(pr.P) * float64(pr.K1+pr.K2)
	band := int(d.SubmitBudget/4/perRow) / tile * tile
	band = max(tile, min(band, (pr.M+tile-1)/tile*tile))
	for m0 := 0; m0 < pr.M; m0 += band {
		m1 := min(pr.M, m0+band)
		for k0 := 0; k0 < pr.K1; k0 += loraKChunk {
			k1 := min(pr.K1, k0+loraKChunk)
			r1 := 0
			if k0 == 0 {
				r1 = pr.K2
			}
			tiles := (m1 - m0 + tile - 1) / tile * ((pr.P + tile - 1) / tile)
			g := d.Grid1D(tiles, loraWG)
			work := 2 * float64(m1-m0) * float64(pr.P) * float64(k1-k0+r1)
			params := loraParams(pr.M, pr.P, pr.K1, pr.K2, m0, m1, k0, k1, r1, g.X, pr.accum || k0 > 0, pr.alpha1, pr.alpha2)
			if err := loraDispatch(r, p, g, work, params, pr.out.Arg(), pr.l1.Arg(), pr.w.Arg(), pr.l2.Arg(), pr.w2.Arg()); err != nil {
				return err
			}
		}
	}
	return nil
}

// loraTN records out (M, P) += alpha·L1ᵀ·W over N rows, with l1 (N, M) and
// w (N, P) f32, in chunks of at most loraNChunk rows (the loop bound) and of
// at most a quarter of the submission budget.
func loraTN(r *gpu.Recorder, out, l1, w *gpu.Buffer, N, M, P int, alpha float32) error {
	d := r.Device()
	p, err := d.Pipeline(with(kLoRATN, loraSubsFor(F32, M, P)))
	if err != nil {
		return err
	}
	perRow := 2 * float64(M) * float64(P)
	chunk := min(loraNChunk, max(loraSplit, int(d.SubmitBudget/4/perRow)))
	tiles := (M + 3) / 4 * ((P + 3) / 4)
	g := d.Grid1D(tiles, loraTNWG/loraSplit)
	for n0 := 0; n0 < N; n0 += chunk {
		n1 := min(N, n0+chunk)
		params := loraParams(M, P, N, 0, 0, M, n0, n1, 0, g.X, true, alpha, 0)
		if err := r.Dispatch(p, g, perRow*float64(n1-n0), params, out.Arg(), l1.Arg(), w.Arg()); err != nil {
			return err
		}
	}
	return nil
}

// loraCheck validates sizes and that every buffer holds its tensor.
func loraCheck(what string, N, Cin, Cout, R int, bufs ...any) error {
	if N < 1 || Cin < 1 || Cout < 1 || R < 0 || R > loraMaxR {
		return fmt.Errorf("%s: sizes N=%d Cin=%d Cout=%d R=%d: need N, Cin, Cout >= 1 and 0 <= R <= %d",
			what, N, Cin, Cout, R, loraMaxR)
	}
	for i := 0; i+2 < len(bufs); i += 3 {
		name, b, need := bufs[i].(string), bufs[i+1].(*gpu.Buffer), bufs[i+2].(uint64)
		if need == 0 {
			continue
		}
		if b == nil {
			return fmt.Errorf("%s: buffer %s is nil", what, name)
		}
		if b.Size < need {
			return fmt.Errorf("%s: buffer %s (%s) holds %d bytes, needs %d", what, name, b.Name, b.Size, need)
		}
	}
	return nil
}

// loraF32 is the byte size of n float32 values.
func loraF32(n int) uint64 { return 4 * uint64(n) }

// LoRAForward records the LoRA linear with a frozen weight:
// u = x·Aᵀ and y = x·Wᵀ + scale·u·Bᵀ (nn/ref.LoRAForward). u is saved for
// the backward. With R = 0 it is the frozen linear (u, a, b may be nil).
func LoRAForward(r *gpu.Recorder,
	y, // (N, Cout) out
	u, // (N, R) out
	x, // (N, Cin)
	w, // (Cout, Cin) frozen, in format wf
	a, // (R, Cin)
	b *gpu.Buffer, // (Cout, R)
	N, Cin, Cout, R int, scale float32, wf WeightFormat) error {
	if err := loraCheck("lora forward", N, Cin, Cout, R, "y", y, loraF32(N*Cout), "u", u, loraF32(N*R),
		"x", x, loraF32(N*Cin), "w", w, wf.Bytes(Cout*Cin), "a", a, loraF32(R*Cin), "b", b, loraF32(Cout*R)); err != nil {
		return err
	}
	if R > 0 {
		if err := loraTiled(r, loraProduct{out: u, l1: x, w: a, M: N, P: R, K1: Cin, alpha1: 1, wf: F32}, false); err != nil {
			return err
		}
	}
	return loraTiled(r, loraProduct{out: y, l1: x, w: w, l2: u, w2: b, M: N, P: Cout, K1: Cin, K2: R,
		alpha1: 1, alpha2: scale, wf: wf}, false)
}

// LoRABackward records the LoRA linear's backward (nn/ref.LoRABackward):
// du = scale·dy·B and dx = dy·W + du·A are overwritten; db += scale·dyᵀ·u
// and da += duᵀ·x accumulate. The frozen W gets no gradient. With R = 0 it
// is the frozen linear's backward dx = dy·W (da, db, du, u, a, b may be nil).
func LoRABackward(r *gpu.Recorder,
	dx, // (N, Cin) out
	da, // (R, Cin) accumulated
	db, // (Cout, R) accumulated
	du, // (N, R) out, scratch of the backward
	dy, // (N, Cout)
	x, // (N, Cin)
	u, // (N, R) saved by the forward
	w, // (Cout, Cin) frozen, in format wf
	a, // (R, Cin)
	b *gpu.Buffer, // (Cout, R)
	N, Cin, Cout, R int, scale float32, wf WeightFormat) error {
	xBytes := loraF32(N * Cin) // x is only read for dA
	if R == 0 {
		xBytes = 0
	}
	if err := loraCheck("lora backward", N, Cin, Cout, R, "dx", dx, loraF32(N*Cin), "da", da, loraF32(R*Cin),
		"db", db, loraF32(Cout*R), "du", du, loraF32(N*R), "dy", dy, loraF32(N*Cout), "x", x, xBytes,
		"u", u, loraF32(N*R), "w", w, wf.Bytes(Cout*Cin), "a", a, loraF32(R*Cin), "b", b, loraF32(Cout*R)); err != nil {
		return err
	}
	if R > 0 {
		if err := loraTiled(r, loraProduct{out: du, l1: dy, w: b, M: N, P: R, K1: Cout, alpha1: scale, wf: F32}, true); err != nil {
			return err
		}
		if err := loraTN(r, db, dy, u, N, Cout, R, scale); err != nil {
			return err
		}
		if err := loraTN(r, da, du, x, N, R, Cin, 1); err != nil {
			return err
		}
	}
	return loraTiled(r, loraProduct{out: dx, l1: dy, w: w, l2: du, w2: a, M: N, P: Cin, K1: Cout, K2: R,
		alpha1: 1, alpha2: 1, wf: wf}, true)
}

// FrozenLinearForward records y = x·Wᵀ for a frozen layer whose adapters
// are disabled: LoRAForward with R = 0.
func FrozenLinearForward(r *gpu.Recorder,
	y, // (N, Cout) out
	x, // (N, Cin)
	w *gpu.Buffer, // (Cout, Cin) frozen, in format wf
	N, Cin, Cout int, wf WeightFormat) error {
	return LoRAForward(r, y, nil, x, w, nil, nil, N, Cin, Cout, 0, 0, wf)
}

// FrozenLinearBackward records dx = dy·W for a frozen layer whose adapters
// are disabled: LoRABackward with R = 0.
func FrozenLinearBackward(r *gpu.Recorder,
	dx, // (N, Cin) out
	dy, // (N, Cout)
	w *gpu.Buffer, // (Cout, Cin) frozen, in format wf
	N, Cin, Cout int, wf WeightFormat) error {
	return LoRABackward(r, dx, nil, nil, nil, dy, nil, nil, w, nil, nil, N, Cin, Cout, 0, 0, wf)
}

// MergeLoRA records W += scale·B·A at growth, in W's own format (for Half:
// unpack, add, repack, saturating at ±65504 like PackHalf). The work is cut
// into element ranges of at most a quarter of the submission budget.
func MergeLoRA(r *gpu.Recorder,
	w, // (Cout, Cin) in format wf, updated in place
	a, // (R, Cin)
	b *gpu.Buffer, // (Cout, R)
	Cout, Cin, R int, scale float32, wf WeightFormat) error {
	if err := loraCheck("lora merge", 1, Cin, Cout, R, "w", w, wf.Bytes(Cout*Cin), "a", a, loraF32(R*Cin),
		"b", b, loraF32(Cout*R)); err != nil {
		return err
	}
	if R == 0 {
		return nil
	}
	d := r.Device()
	k, n, per := kLoRAMF32, Cout*Cin, 2*float64(R)
	if wf == Half {
		k, n, per = kLoRAMH, (Cout*Cin+1)/2, 4*float64(R)
	}
	p, err := d.Pipeline(k)
	if err != nil {
		return err
	}
	span := max(loraWG, int(d.SubmitBudget/4/per))
	for e0 := 0; e0 < n; e0 += span {
		e1 := min(n, e0+span)
		g := d.Grid1D(e1-e0, loraWG)
		params := loraParams(Cout, Cin, R, 0, e0, e1, 0, 0, 0, g.X, true, scale, 0)
		if err := r.Dispatch(p, g, per*float64(e1-e0), params, w.Arg(), b.Arg(), a.Arg()); err != nil {
			return err
		}
	}
	return nil
}

// PackHalfGPU records packing n float32 values of src into half words of
// dst on the device ((n+1)/2 words; the high half of an odd last word is 0),
// with the same rounding and saturation as PackHalf. Growth uses it to
// freeze layers that already live on the GPU.
func PackHalfGPU(r *gpu.Recorder,
	dst, // (ceil(n/2),) u32 words out
	src *gpu.Buffer, // (n,) f32
	n int) error {
	if n < 1 {
		return fmt.Errorf("pack half: n = %d, need at least 1", n)
	}
	if dst.Size < Half.Bytes(n) || src.Size < loraF32(n) {
		return fmt.Errorf("pack half: %s (%d bytes) or %s (%d bytes) too small for %d elements", dst.Name, dst.Size,
			src.Name, src.Size, n)
	}
	d := r.Device()
	p, err := d.Pipeline(kLoRAPack)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+1)/2, loraWG)
	return r.Dispatch(p, g, float64(elems4*n), loraParams(n, 0, 0, 0, 0, 0, 0, 0, 0, g.X, false, 0, 0),
		dst.Arg(), src.Arg())
}

// UnpackHalfGPU records widening n half values of src, packed two per u32
// word as PackHalf and PackHalfGPU write them, into float32 values of dst,
// exactly (UnpackHalf on the device). Frozen layers use it to give the
// fast matmul a float32 copy of a half weight.
func UnpackHalfGPU(r *gpu.Recorder,
	dst, // (n,) f32 out
	src *gpu.Buffer, // (ceil(n/2),) u32 words
	n int) error {
	if n < 1 {
		return fmt.Errorf("unpack half: n = %d, need at least 1", n)
	}
	if dst.Size < loraF32(n) || src.Size < Half.Bytes(n) {
		return fmt.Errorf("unpack half: %s (%d bytes) or %s (%d bytes) too small for %d elements", dst.Name, dst.Size,
			src.Name, src.Size, n)
	}
	d := r.Device()
	p, err := d.Pipeline(kLoRAUnpack)
	if err != nil {
		return err
	}
	g := d.Grid1D((n+1)/2, loraWG)
	return r.Dispatch(p, g, float64(elems4*n), loraParams(n, 0, 0, 0, 0, 0, 0, 0, 0, g.X, false, 0, 0),
		dst.Arg(), src.Arg())
}

// halfMax is the largest finite binary16 value.
const halfMax = 65504

// halfBits rounds f to binary16 bits, to nearest with ties to even. Values
// beyond ±65504 (±Inf included) saturate to ±65504, the choice the GPU
// packer makes explicit because WGSL leaves pack2x16float of such values
// indeterminate; a frozen weight thus never becomes infinite. NaN stays NaN.
// Results below the normal range are subnormal halves (exact to 2^-24), and
// values below 2^-25 round to a signed zero.
func halfBits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	if f != f {
		return sign | 0x7e00
	}
	if f >= halfMax || f <= -halfMax {
		return sign | 0x7bff
	}
	exp := int(b>>23&0xff) - 127
	mant := b & 0x7fffff
	if exp < -25 {
		return sign
	}
	var q, rem, half uint32
	if exp < -14 {
		// Subnormal: units of 2^-24; the implicit bit joins the mantissa.
		m := mant | 0x800000
		shift := uint32(-exp - 1)
		q, rem, half = m>>shift, m&(1<<shift-1), 1<<(shift-1)
	} else {
		q, rem, half = uint32(exp+15)<<10|mant>>13, mant&0x1fff, 0x1000
	}
	if rem > half || (rem == half && q&1 == 1) {
		q++ // a carry out of the mantissa correctly bumps the exponent
	}
	return sign | uint16(q)
}

// halfValue widens binary16 bits to float32 exactly.
func halfValue(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// PackHalf converts float32 values to half words on the host, two per word
// (element e is half e%2 of word e/2, low half first; the high half of an
// odd last word is 0), rounding to nearest even like pack2x16float and
// saturating beyond ±65504 (see halfBits); PackHalfGPU does the same on the
// device.
func PackHalf(src []float32) []uint32 {
	out := make([]uint32, (len(src)+1)/2)
	for i, v := range src {
		out[i/2] |= uint32(halfBits(v)) << (16 * (i % 2))
	}
	return out
}

// UnpackHalf returns the n float32 values held by half words, exactly.
func UnpackHalf(words []uint32, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = halfValue(uint16(words[i/2] >> (16 * (i % 2))))
	}
	return out
}
